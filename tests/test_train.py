"""Regularized training (Eq. 3): determinism, resume after a kill, divergence, the regulariser's
direction, learned temperatures, config errors and the results record. All on the embedded
digits, a few dozen steps each: part of them (256 training and 128 test images: each evaluation is
of the whole sets), all of them where a check depends on the data (the regulariser's direction,
the reference formula's closeness to Eq. 1, the data checks' messages)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, replace

import pytest
import torch

from snnl.data import load_dataset
from snnl.losses import soft_nearest_neighbor_loss
from snnl.results import RECORD_FIELDS, load_records, read_record
from snnl.train import TrainConfig, TrainingDiverged, evaluate, train

LAYERS = ("conv1", "conv2", "fc1", "fc2")


@pytest.fixture(scope="module")
def all_digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=256, n_test=128)


def cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", steps=20, batch_size=64, lr=1e-3, eval_every=10, log_every=5,
                alpha=10.0, device="cpu")
    return TrainConfig(**{**base, **kw})


class KillAt:
    """A ``transform`` that raises at the k-th training batch (a simulated kill) or, with
    ``nan=True``, puts a NaN into that batch; counts the batches it saw."""

    def __init__(self, k: int, nan: bool = False):
        self.k, self.nan, self.calls = k, nan, 0

    def __call__(self, model, x, y):
        self.calls += 1
        if self.calls - 1 == self.k:
            if not self.nan:
                raise KeyboardInterrupt(f"killed at step {self.k}")
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
        return x


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_numbers_on_cpu(digits):
    c = cfg(steps=25)
    a, b = train(c, digits, progress=False), train(c, digits, progress=False)
    assert a.metrics == b.metrics
    assert a.history == b.history
    assert same_state(a.model, b.model)
    other = train(replace(c, seed=1), digits, progress=False)
    assert other.history["ce"] != a.history["ce"]


def test_killed_run_resumes_to_the_same_result(digits, tmp_path):
    c = cfg(steps=20)
    straight = train(c, digits, progress=False)
    kill = KillAt(12)
    with pytest.raises(KeyboardInterrupt):
        train(c, digits, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False, transform=kill)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain types only
    assert state["step"] == 10  # the last checkpoint before the kill
    resumed_from = []
    resumed = train(c, digits, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False,
                    callback=lambda step, model: resumed_from.append(step))
    assert resumed_from[0] == 10 and resumed_from[-1] == 20, "resumed at the checkpoint, not from scratch"
    assert resumed.metrics == straight.metrics
    assert resumed.history == straight.history
    assert resumed.record["history"]["resumed_from_step"] == 10  # the record says where its process began
    assert "resumed_from_step" not in straight.record["history"]
    assert same_state(resumed.model, straight.model)
    # a finished checkpoint resumes to the same result without training again
    again = train(c, digits, checkpoint_dir=tmp_path, progress=False)
    assert again.metrics == straight.metrics


def test_a_checkpoint_of_another_config_is_refused(digits, tmp_path):
    train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(cfg(steps=5, alpha=0.0), digits, checkpoint_dir=tmp_path, progress=False)


@pytest.mark.parametrize("alpha, k, last_good", [(10.0, 7, 5), (0.0, 7, 5), (0.0, 10, 10)])
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(digits, tmp_path, alpha, k, last_good):
    """A NaN batch at step k (alpha = 0 at a step with and without the logged SNNL, alpha > 0)."""
    with pytest.raises(TrainingDiverged, match=rf"non-finite loss at step {k}\b.*checkpoint") as err:
        train(cfg(steps=20, alpha=alpha), digits, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False,
              transform=KillAt(k, nan=True))
    assert str(tmp_path / "checkpoint.pt") in str(err.value) and "\n" not in str(err.value)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain types only
    assert state["step"] == last_good
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def snnl_at_t0(model, data, layers=LAYERS, t=100.0):
    x, y = data.x_test[:256], data.y_test[:256]
    with torch.no_grad():
        _, hidden = model.eval()(x)
    return {n: soft_nearest_neighbor_loss(hidden[n].flatten(1), y, t).item() for n in layers}


def test_the_regulariser_raises_entanglement_for_alpha_above_zero_and_lowers_it_below(all_digits):
    """Eq. 3 with a fixed T: alpha > 0 maximises the hidden layers' SNNL, alpha < 0 minimises it,
    measured on held-out digits at the training temperature."""
    digits = all_digits
    runs = {a: train(cfg(steps=30, alpha=a, learn_temperature=False), digits, progress=False) for a in (-1, 0, 1)}
    s = {a: snnl_at_t0(r.model, digits) for a, r in runs.items()}
    for n in LAYERS:
        assert s[1][n] > s[0][n] + 0.05, (n, s)
    for n in ("fc1", "fc2"):
        assert s[-1][n] < s[0][n] - 0.2, (n, s)
    assert sum(s[-1].values()) < sum(s[0].values()) < sum(s[1].values())
    # the recorded training-batch SNNL moves the same way
    last = {a: sum(r.history["snnl"][n][-1] for n in LAYERS) for a, r in runs.items()}
    assert last[-1] < last[0] < last[1], last


def test_learned_temperatures_are_recorded_and_move(digits):
    r = train(cfg(steps=20, alpha=10.0, temperature=50.0), digits, progress=False)
    h = r.history
    assert h["step"] == [0, 5, 10, 15]
    for n in LAYERS:
        temps = h["temperature"][n]
        assert len(temps) == len(h["step"]) == len(h["snnl"][n])
        assert all(math.isfinite(t) and t > 0 for t in temps)
        assert len(set(temps)) == len(temps), f"{n}: the temperature should move every logged step"
        assert r.metrics["final_temperature"][n] != 50.0
    fixed = train(cfg(steps=10, learn_temperature=False, temperature=50.0), digits, progress=False)
    assert all(set(v) == {50.0} for v in fixed.history["temperature"].values())


def test_history_layout_and_callback(digits):
    seen = []

    def callback(step, model):
        seen.append((step, model.training))

    r = train(cfg(steps=12, layers=["fc2"], eval_every=5), digits, progress=False, callback=callback)
    assert seen == [(s, True) for s in range(13)]
    h = r.history
    assert list(h["snnl"]) == ["fc2"] and r.config.layers == ("fc2",)
    assert h["eval_step"] == [5, 10, 12]
    for k in ("train_ce", "train_accuracy", "test_ce", "test_accuracy"):
        assert len(h[k]) == 3
    assert r.metrics["test_accuracy"] == h["test_accuracy"][-1]
    assert 0.0 <= r.metrics["test_accuracy"] <= 1.0


def test_triplet_regulariser_trains(digits):
    r = train(cfg(steps=6, regularizer="triplet", alpha=0.1), digits, progress=False)
    assert all(v >= 0 for vs in r.history["snnl"].values() for v in vs)  # the triplet loss values
    assert math.isfinite(r.metrics["test_ce"])


def test_reference_regulariser_trains_with_the_authors_formula(all_digits, monkeypatch):
    """regularizer="snnl-reference": the modules compute the authors' formula; at these
    distances it is Eq. 1 up to its 1e-5 terms, so the run stays close to the exact one."""
    import snnl.reference

    digits = all_digits

    calls = []
    real = snnl.reference.soft_nearest_neighbor_loss_reference

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(snnl.reference, "soft_nearest_neighbor_loss_reference", spy)
    ref = train(cfg(steps=4, alpha=1.0, regularizer="snnl-reference"), digits, progress=False)
    assert len(calls) == 4 * len(ref.history["snnl"])  # every layer, every step
    exact = train(cfg(steps=4, alpha=1.0), digits, progress=False)
    assert len(calls) == 4 * len(ref.history["snnl"])  # not by the exact loss
    for n, vs in ref.history["snnl"].items():
        assert vs == pytest.approx(exact.history["snnl"][n], rel=1e-3)
        assert ref.history["temperature"][n] == pytest.approx(exact.history["temperature"][n], rel=1e-3)
    assert ref.history["temperature"]["fc1"][-1] != 100.0  # learned
    assert ref.metrics["test_ce"] == pytest.approx(exact.metrics["test_ce"], rel=1e-2)


def test_evaluate_matches_a_manual_count_and_restores_the_mode(digits):
    r = train(cfg(steps=3), digits, progress=False)
    model = r.model.train()
    x, y = digits.x_test[:100], digits.y_test[:100]
    out = evaluate(model, x, y, batch_size=32)
    assert model.training
    with torch.no_grad():
        logits = model.eval()(x)[0]
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert out["ce"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


@pytest.mark.parametrize("bad, match", [
    (dict(model="vgg"), "unknown model 'vgg'; choose one of: cnn, cnn1, resnet"),
    (dict(distance="manhattan"), "unknown distance 'manhattan'; choose one of: euclidean, cosine"),
    (dict(regularizer="l2"), "unknown regularizer 'l2'; choose one of: snnl, snnl-reference, triplet"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; choose one of: adam, sgd"),
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(batch_size=-1), "batch_size must be >= 1"),
    (dict(temperature=0.0), "temperature must be finite and > 0"),
    (dict(temperature=float("inf")), "temperature must be finite and > 0"),
    (dict(alpha=float("nan")), "alpha must be finite, got nan"),
    (dict(lr_decay=-1.0), "lr_decay must be finite and > 0"),
    (dict(lr=0.0), "lr must be finite and > 0"),
    (dict(size=0), "size must be >= 1"),
    (dict(channels=0), "channels must be >= 1"),
    (dict(channels=-1), "channels must be >= 1"),
    (dict(n_train=0), "n_train must be >= 1"),
    (dict(experiment="../../x"), "experiment name '../../x' cannot be part of a file name"),
])
def test_config_errors_are_one_clear_line(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        cfg(**bad)
    assert "\n" not in str(err.value)


def test_unknown_layer_names_the_model_layers(digits):
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['fc3'\] for cnn; choose from"):
        train(cfg(layers=("fc3",)), digits, progress=False)


def test_results_record_has_the_required_fields(digits, tmp_path):
    r = train(cfg(steps=5, experiment="table1", seed=3), digits, out_dir=tmp_path, progress=False)
    rec = read_record(r.record["path"])
    assert set(RECORD_FIELDS) <= set(rec)
    assert rec["experiment"] == "table1" and rec["dataset"] == "digits" and rec["seed"] == 3
    assert rec["profile"] == "small" and rec["device"] == "cpu"
    assert rec["config"]["alpha"] == 10.0 and rec["config"]["steps"] == 5
    assert rec["metrics"]["test_accuracy"] == r.metrics["test_accuracy"]
    assert rec["history"]["test_accuracy"] == r.history["test_accuracy"]
    assert rec["wall_seconds"] > 0 and rec["torch_version"] == torch.__version__
    assert [x["path"] for x in load_records(tmp_path, "table1", dataset="digits")] == [r.record["path"]]


class RunsCode:
    """Unpickling it creates a file: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(digits, tmp_path):
    from snnl.checkpointing import CheckpointError
    from snnl.experiments.common.checkpoints import checkpoint_step

    c, marker = cfg(steps=5), tmp_path / "code-ran"
    torch.save({"config": asdict(c), "step": 3, "payload": RunsCode(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "checkpoint.pt"))) as err:
        train(c, digits, checkpoint_dir=tmp_path, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError):
        checkpoint_step(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_a_corrupted_checkpoint_is_one_line_naming_the_file(digits, tmp_path, content):
    from snnl.checkpointing import CheckpointError

    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "checkpoint.pt"))) as err:
        train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False)
    assert "\n" not in str(err.value)
    torch.save({"config": asdict(cfg(steps=5)), "step": 2}, tmp_path / "checkpoint.pt")  # keys missing
    with pytest.raises(CheckpointError, match="checkpoint.pt: KeyError"):
        train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False)


HOLD = """
import sys, time
from snnl.checkpointing import CheckpointLock
CheckpointLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_live_process_on_a_checkpoint_folder_is_refused_and_a_dead_ones_lock_taken_over(digits, tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    from snnl.checkpointing import CheckpointLocked

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        steps = []
        with pytest.raises(CheckpointLocked, match=rf"pid {holder.pid}\b") as err:
            train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False, callback=lambda s, m: steps.append(s))
        assert steps == [] and "\n" not in str(err.value)
    finally:
        holder.kill()  # SIGKILL: the lock file stays, its lock goes with the process
        holder.wait()
    assert (tmp_path / "checkpoint.lock").exists()
    done = train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False)
    from snnl.checkpointing import CheckpointLock

    with CheckpointLock(tmp_path):  # held by another run: a finished checkpoint is still read, unchanged
        mtime = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
        assert train(cfg(steps=5), digits, checkpoint_dir=tmp_path, progress=False).metrics == done.metrics
        assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == mtime
        with pytest.raises(CheckpointLocked):  # more steps: it would write
            train(cfg(steps=8), digits, checkpoint_dir=tmp_path, progress=False)


def _save_many(path):
    from snnl.checkpointing import save_checkpoint

    for i in range(30):
        save_checkpoint(path, {"step": i, "w": torch.full((1000,), float(i))})
    return True


def test_concurrent_checkpoint_writes_use_their_own_temporary_files(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert pool.map(_save_many, [tmp_path / "checkpoint.pt"] * 3) == [True] * 3
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 29 and torch.equal(state["w"], torch.full((1000,), 29.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_output_places_are_checked_before_the_first_step(digits, tmp_path):
    (tmp_path / "file").write_text("x")
    for kw, match in [(dict(out_dir=tmp_path / "file"), "output folder .* is a file"),
                      (dict(out_dir=tmp_path / "file" / "sub"), "output folder .* cannot be written"),
                      (dict(checkpoint_dir=tmp_path / "file"), "checkpoint folder .* is a file")]:
        steps = []
        with pytest.raises(ValueError, match=match):
            train(cfg(steps=5), digits, progress=False, callback=lambda s, m: steps.append(s), **kw)
        assert steps == []


def test_a_batch_larger_than_the_training_set_is_refused(digits):
    small = replace(digits, x_train=digits.x_train[:40], y_train=digits.y_train[:40])
    with pytest.raises(ValueError, match="batch_size 64 is larger than the training set \\(40 points\\)"):
        train(cfg(steps=5), small, progress=False)
    assert train(cfg(steps=2, batch_size=40), small, progress=False).metrics


def test_inconsistent_data_is_refused_before_training(all_digits):
    from snnl.data import DatasetError

    digits = all_digits

    for bad, match in [(dict(y_train=digits.y_train[:-7]), "1297 images but 1290 labels"),
                       (dict(y_test=digits.y_test + 10), "labels must be integers in 0..9"),
                       (dict(x_test=digits.x_test[:, :, :14, :14]), "training images are")]:
        with pytest.raises(DatasetError, match=match):
            train(cfg(steps=2), replace(digits, **bad), progress=False)
