"""GANs and the soft nearest neighbor loss (Section 3.2, Apps. D and I): shapes, the real/synthetic
measurements, determinism, resume after a kill, errors, the SNNL generator's direction, and the
experiment functions' records. Tiny problems (8x8 digits, a few dozen steps)."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn as nn

import snnl.gan as gan
from snnl.data import Dataset, load_dataset
from snnl.experiments.generative import gans as gen
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE
from snnl.gan import (GANConfig, build_gan, log_other_class_probability, nearest_neighbour_accuracy,
                      real_fake_entanglement, train_gan)
from snnl.losses import soft_nearest_neighbor_loss
from snnl.results import read_record


@pytest.fixture(scope="module")
def tiny():
    """The embedded digits at 8x8: 1,297 training images."""
    return load_dataset("digits", size=8)


def cfg(**kw) -> GANConfig:
    base = dict(dataset="digits", variant="fc", steps=12, batch_size=32, width=16, z_dim=8,
                measure_every=3, measure_size=40, log_every=2, device="cpu", n_samples=16)
    base["snapshot_steps"] = (0, kw.get("steps", base["steps"]))
    return GANConfig(**{**base, **kw})


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------- models
@pytest.mark.parametrize("variant", gan.VARIANTS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_generator_and_discriminator_shapes(variant, shape):
    G, D = build_gan(variant, shape, z_dim=16, width=8, out_dim=10)
    x = G(torch.randn(5, 16))
    assert x.shape == (5, *shape)
    assert x.min() >= 0 and x.max() <= 1  # images live in [0, 1]
    assert D(x).shape == (5, 10)


def test_bad_variant_objective_and_shape_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown variant 'vae'; choose one of: fc, dcgan") as e:
        build_gan("vae")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="choose one of: gan, snnl, snnl-learned"):
        GANConfig(objective="wgan")
    with pytest.raises(ValueError, match="choose one of: fc, dcgan"):
        GANConfig(variant="resnet")
    with pytest.raises(ValueError, match="choose one of: maximize, nonsaturating"):
        GANConfig(g_loss="hinge")
    with pytest.raises(ValueError, match="divisible by 4"):
        build_gan("dcgan", (1, 30, 30))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_gan("fc", (28, 28))
    with pytest.raises(ValueError, match="snapshot_steps"):
        GANConfig(steps=10, snapshot_steps=(20,))
    with pytest.raises(ValueError, match="same shape"):
        real_fake_entanglement(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 7, 7))
    with pytest.raises(ValueError, match="unknown profile 'huge'; choose one of: small, paper"):
        gen.get_profile("huge")
    with pytest.raises(ValueError, match="two different dimensions"):
        gen.noise_sweep(build_gan("fc", (1, 8, 8), z_dim=4)[0], 4, dims=(1, 1))


# ---------------------------------------------------------------------------------- measurements
def test_entanglement_of_identical_batches_is_high_and_of_separated_ones_low(tiny):
    real = tiny.x_train[:100]
    same = real_fake_entanglement(real, real.clone())
    # the maximum for equal halves is at T -> infinity: log((2n - 1) / (n - 1)), about log 2
    assert same.value > 0.6
    other_half = real_fake_entanglement(real, tiny.x_train[100:200])  # same distribution
    assert other_half.value > 0.3
    far = real_fake_entanglement(real, (real + 3.0))  # shifted far away: separable
    assert far.value < 0.01
    noise = real_fake_entanglement(real, torch.rand_like(real))
    assert noise.value < 0.05 and noise.value < other_half.value


def test_nearest_neighbour_accuracy(tiny):
    real = tiny.x_train[:100]
    assert nearest_neighbour_accuracy(real, real + 3.0) == 1.0
    assert nearest_neighbour_accuracy(real, real.clone()) == 0.0  # every nearest point is the twin
    assert 0.3 < nearest_neighbour_accuracy(real, tiny.x_train[100:200]) < 0.7


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_other_class_probability_agrees_with_eq1(distance):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.arange(30) % 2
    lp = log_other_class_probability(x, y, 2.0, distance)
    eq1 = -torch.log1p(-lp.exp()).mean()  # l_sn = -mean log(1 - P(other))
    assert torch.allclose(eq1.double(), soft_nearest_neighbor_loss(x, y, 2.0, distance).double(), atol=1e-5)


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("objective,variant", [("gan", "fc"), ("gan", "dcgan"), ("snnl", "fc"),
                                               ("snnl-learned", "dcgan")])
def test_same_seed_same_numbers_on_cpu(tiny, objective, variant):
    c = cfg(objective=objective, variant=variant, steps=8)
    a, b = train_gan(c, tiny, progress=False), train_gan(c, tiny, progress=False)
    assert a.history == b.history and a.metrics == b.metrics
    assert same_state(a.generator, b.generator)
    assert all(torch.equal(a.snapshots[s], b.snapshots[s]) for s in a.snapshots)
    assert len(a.history["measure_step"]) == 4 and a.history["measure_step"][-1] == 8
    c1 = train_gan(replace(c, seed=1), tiny, progress=False)
    assert not same_state(a.generator, c1.generator)
    if objective == "snnl-learned":
        assert a.discriminator(tiny.x_train[:3]).shape == (3, 10)


@pytest.mark.parametrize("objective", ["gan", "snnl"])
def test_killed_run_resumes_to_the_same_result(tiny, tmp_path, monkeypatch, objective):
    c = cfg(objective=objective, steps=12, measure_every=3)
    full = train_gan(c, tiny, progress=False)
    real_measure, calls = gan._measure, {"n": 0}

    def dying(*a, **k):  # measurements at steps 0, 3, 6, 9: die at step 9, after the checkpoint at 8
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real_measure(*a, **k)

    monkeypatch.setattr(gan, "_measure", dying)
    with pytest.raises(KeyboardInterrupt):
        train_gan(c, tiny, checkpoint_dir=tmp_path, checkpoint_every=4, progress=False)
    monkeypatch.setattr(gan, "_measure", real_measure)
    resumed = train_gan(c, tiny, checkpoint_dir=tmp_path, checkpoint_every=4, progress=False)
    assert resumed.history == full.history and resumed.metrics == full.metrics
    assert same_state(resumed.generator, full.generator)
    assert torch.equal(resumed.snapshots[12], full.snapshots[12])
    with pytest.raises(ValueError, match="different configuration"):
        train_gan(replace(c, lr=1e-3), tiny, checkpoint_dir=tmp_path, progress=False)


def test_non_finite_generator_loss_is_training_diverged(tiny, tmp_path, monkeypatch):
    from snnl.train import TrainingDiverged  # one error for both training loops (snnl.checkpointing)

    real_bce = gan.F.binary_cross_entropy_with_logits
    calls = {"n": 0}

    def bce(logits, target):  # the generator loss of step 5 is NaN (three calls a step: D real, D fake, G)
        calls["n"] += 1
        out = real_bce(logits, target)
        return out * float("nan") if calls["n"] == 3 * 5 + 3 else out

    monkeypatch.setattr(gan.F, "binary_cross_entropy_with_logits", bce)
    with pytest.raises(TrainingDiverged, match=r"non-finite generator loss at step 5; the last good checkpoint"):
        train_gan(cfg(objective="gan", steps=12), tiny, checkpoint_dir=tmp_path, checkpoint_every=4, progress=False)


def test_snnl_generator_increases_real_synthetic_snnl(tiny):
    c = cfg(objective="snnl", steps=150, lr=3e-3, temperature=0.5, learn_temperature=False, measure_every=150,
            measure_size=64,
            batch_size=64, width=32, snapshot_steps=(0, 150), n_samples=64)
    res = train_gan(c, tiny, progress=False)
    real = res.eval_real[:64]
    y = torch.cat([torch.zeros(64), torch.ones(64)]).long()

    def loss(fake):
        return float(soft_nearest_neighbor_loss(torch.cat([real, fake]).flatten(1), y, 0.5))

    before, after = loss(res.snapshots[0]), loss(res.snapshots[150])
    assert after > before + 0.1, (before, after)
    assert res.metrics["entanglement_end"] > res.metrics["entanglement_start"]
    assert res.metrics["nn_accuracy_end"] < res.metrics["nn_accuracy_start"]


# ---------------------------------------------------------------------------------- experiments
def test_points_round_trip():
    x = np.random.default_rng(0).normal(0, 30, (50, 2))
    assert np.allclose(gen.decode_points(gen.encode_points(x)), x, rtol=1e-3, atol=1e-2)


def test_grid_round_trip():
    x = torch.rand(10, 1, 8, 8)
    img = gen.decode_grid(gen.encode_grid(x, nrow=5))
    assert img.shape == (2 * 8 + 3 * 2, 5 * 8 + 6 * 2)  # make_grid: 2-pixel padding
    assert abs(img[2:10, 2:10] / 255.0 - x[0, 0].numpy()).max() <= 0.5 / 255 + 1e-6


class FixedClassifier(nn.Module):
    """Predicts class ``int(x.sum()) % 10``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(x.flatten(1).sum(1).long() % 10, 10).float() * 5 + self.w, {}


def test_class_histogram_counts_classes_above_the_threshold():
    x = torch.zeros(200, 1, 2, 2)
    x[:150, 0, 0, 0] = 3.0  # 150 of class 3, 49 of class 0, 1 of class 7 (0.5% < 1%)
    x[199, 0, 0, 0] = 7.0
    h = gen.class_histogram(FixedClassifier(), x)
    assert h["class_histogram"][3] == 0.75 and h["class_histogram"][0] == 0.245 and h["class_histogram"][7] == 0.005
    assert h["class_coverage"] == 2 and abs(sum(h["class_histogram"]) - 1) < 1e-9


def test_noise_sweep_varies_two_dimensions_only():
    G = build_gan("fc", (1, 8, 8), z_dim=6, width=8)[0]
    seen = []
    G.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    out = gen.noise_sweep(G, 6, dims=(2, 4), n=3, span=2.0)
    z = seen[0]
    assert out.shape == (9, 1, 8, 8)
    assert torch.equal(z[:, 2], torch.tensor([-2.0, -2, -2, 0, 0, 0, 2, 2, 2]))
    assert torch.equal(z[:, 4], torch.tensor([-2.0, 0, 2] * 3))
    assert (z[:, [0, 1, 3, 5]] == z[0, [0, 1, 3, 5]]).all()


@pytest.fixture
def fast_profile(monkeypatch, tiny):
    p = replace(gen.PROFILES["small"], tsne_points=20, measure_size=30, n_samples=50, measure_every=4,
                classifier_steps=5)
    monkeypatch.setitem(gen.PROFILES, "small", p)
    return tiny


class Stub:
    model, metrics = FixedClassifier(), {"test_accuracy": 0.5}


def test_gan_entanglement_record(fast_profile, tmp_path):
    res = gen.gan_entanglement("fc", steps=8, data=fast_profile, classifier=Stub(), out_dir=tmp_path,
                               progress=False, device="cpu")
    rec = read_record(res.record["path"])
    assert rec["experiment"] == "gan_entanglement" and rec["config"]["variant"] == "fc"
    assert rec["history"]["measure_step"] == [0, 4, 8]
    assert len(rec["history"]["entanglement"]) == 3
    snaps = rec["history"]["snapshots"]
    assert [s["step"] for s in snaps] == [0, 4, 8]
    assert gen.decode_points(snaps[0]["tsne_real"]).shape == (20, 2)
    assert gen.decode_points(snaps[0]["tsne_fake"]).shape == (20, 2)
    assert gen.decode_grid(snaps[-1]["grid"]).ndim == 2
    m = rec["metrics"]
    assert m["entanglement_start"] == rec["history"]["entanglement"][0]
    assert 0 <= m["class_coverage"] <= 10 and len(m["class_histogram"]) == 10
    [row] = [i for i in gen.report_items({"gan_entanglement": [rec]}) if i["runs"]]  # the report reads it
    assert row["status"] in (HOLDS, FAILS, INCONCLUSIVE) and ", fc)" in row["item"]


def test_snnl_gan_and_learned_records(fast_profile, tmp_path):
    res = gen.snnl_gan(steps=4, variant="fc", data=fast_profile, out_dir=tmp_path, progress=False, device="cpu")
    rec = read_record(res.record["path"])
    m = rec["metrics"]
    assert rec["experiment"] == "snnl_gan" and rec["config"]["objective"] == "snnl"
    snnl_rec = rec
    assert 0 <= m["class_coverage"] <= 10 and abs(sum(m["class_histogram"]) - 1) < 1e-3
    assert m["classified_samples"] == 50 and 0 <= m["classifier_test_accuracy"] <= 1
    assert gen.decode_grid(rec["history"]["grids"]["sweep"]).shape == (8 * 8 + 9 * 2,) * 2
    res = gen.snnl_gan_learned(steps=4, variant="fc", data=fast_profile, out_dir=tmp_path, progress=False,
                               device="cpu")
    rec = read_record(res.record["path"])
    assert rec["experiment"] == "snnl_gan_learned" and rec["config"]["embed_dim"] == 10
    ran = [i for i in gen.report_items({"snnl_gan": [snnl_rec], "snnl_gan_learned": [rec]}) if i["runs"]]
    assert [i["section"] for i in ran] == ["Fig. 6", "Fig. 23"] and all(i["status"] in (HOLDS, FAILS, INCONCLUSIVE) for i in ran)
    assert [s["step"] for s in rec["history"]["snapshots"]] == [0, 4]
    # a chapter draws this run's record and a committed one with the same calls
    assert gen.table_generators([snnl_rec, rec]) == gen.table_generators([snnl_rec, res.record])
    assert gen.table_generators([snnl_rec, rec]).count("\n| ") == 2  # a row per record
    assert gen.describe(rec) == gen.describe(res.record) and "learned space" in gen.describe(rec)
    assert "class coverage" in gen.describe(snnl_rec)
    for fig in (gen.plot_snapshots(rec), gen.plot_snnl_generator(snnl_rec), gen.plot_samples([snnl_rec])):
        assert fig.axes
        plt.close(fig)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling it would create a file
        return (open, (self.marker, "w"))


def test_checkpoints_load_without_running_code_and_the_folder_is_locked(tiny, tmp_path):
    from dataclasses import asdict

    from snnl.checkpointing import CheckpointError, CheckpointLock, CheckpointLocked

    c = cfg(objective="gan", steps=4)
    train_gan(c, tiny, checkpoint_dir=tmp_path / "ok", checkpoint_every=2, progress=False)
    assert torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)["step"] == 4  # plain types only
    marker = tmp_path / "code-ran"
    (tmp_path / "evil").mkdir()
    torch.save({"config": asdict(c), "x": _RunsCode(marker)}, tmp_path / "evil" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="evil/checkpoint.pt"):
        train_gan(c, tiny, checkpoint_dir=tmp_path / "evil", progress=False)
    assert not marker.exists()
    with CheckpointLock(tmp_path / "ok"):  # another run holding the folder: a finished checkpoint is only read
        assert train_gan(c, tiny, checkpoint_dir=tmp_path / "ok", progress=False).metrics
        with pytest.raises(CheckpointLocked, match="in use by another running process"):
            train_gan(replace(c, steps=6), tiny, checkpoint_dir=tmp_path / "ok", progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        train_gan(c, tiny, out_dir=tmp_path / "file", progress=False)
