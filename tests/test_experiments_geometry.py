"""Section 5 / Apps. E, G, H experiments: gradients, OOD, hidden layer under attack, Table 2.

Everything runs on scikit-learn's digits at their native 8x8 size (``load_dataset`` is patched in
snnl.experiments.ood.base), so models train in seconds.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import snnl.experiments.ood.geometry as geo
import snnl.experiments.ood.base as geometry_base
from snnl.attacks import FGSM
from snnl.data import Dataset
from snnl.experiments.ood import gradients as adversarial_gradients
from snnl.experiments.ood import hidden as hidden_adversarial
from snnl.experiments.ood import outliers as ood
from snnl.experiments.ood import robustness
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE
from snnl.experiments.ood.robustness import LAYER_MAP, PAPER_TABLE2, PGDSchedule, layer_entanglement, run_table2, table2_rows
from snnl.models import CNN
from snnl.results import read_record
from snnl.train import TrainConfig, train


def tiny_digits(name="digits", **_) -> Dataset:
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1200], perm[1200:]
    return Dataset(name, x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)], "8x8 digits")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(geometry_base, "load_dataset", tiny_digits)
    return geo.config_for("small", train_steps=80, batch_size=64, lr=3e-3, n_points=40, n_eval=100,
                          n_calibration=60, dknn_k=10, dknn_train=500, knn_k=5, perplexity=10.0,
                          adv_train_steps=150, pgd_eps=0.15, pgd_alpha=0.05, pgd_steps=4, adv_lr=3e-3,
                          table2_batch=64, table2_batches=2, robust_eval=150, device="cpu")


@pytest.fixture(scope="module")
def model():
    data = tiny_digits()
    cfg = TrainConfig(dataset="digits", steps=80, batch_size=64, lr=3e-3, device="cpu")
    return train(cfg, data=data, progress=False).model.eval(), data


def test_config_errors():
    with pytest.raises(ValueError, match="unknown profile"):
        geo.config_for("huge")
    with pytest.raises(ValueError, match="unknown GeometryConfig field"):
        geo.config_for("small", n_pointz=3)
    with pytest.raises(ValueError, match="seeds"):
        geo.config_for("small", seeds=(1, 1))
    with pytest.raises(ValueError, match="target"):
        geo.config_for("small", target="all")
    with pytest.raises(ValueError, match="n_points"):
        geo.config_for("small", n_points=5, knn_k=10)
    assert geo.config_for("paper").dataset == "mnist"


def test_gradient_sign_is_the_targeted_fgsm_step(model):
    m, data = model
    x = 0.4 + 0.2 * data.x_test[:16]  # interior points: FGSM's clipping never bites at eps 0.1
    t = torch.full((16,), 3)
    g = geo.adversarial_gradients(m, x, t)
    assert g.shape == x.shape
    step = FGSM(m, eps=0.1, targeted=True)(x, t) - x
    assert torch.allclose(step, 0.1 * g.sign(), atol=1e-6)
    assert (F_ce(m, x + 0.1 * g.sign(), t) < F_ce(m, x, t)).all()  # the step lowers the target's loss


def F_ce(m, x, t):
    return torch.nn.functional.cross_entropy(m(x)[0], t, reduction="none").detach()


def test_gradient_alignment_of_a_model_with_itself(model):
    m, data = model
    x, y = data.x_test[:30], data.y_test[:30]
    r = geo.gradient_alignment(m, m, x, y, torch.ones(30, dtype=torch.long), k=5, perplexity=8.0)
    assert r["embedding"].shape == (60, 2) and r["model"].tolist() == [0] * 30 + [1] * 30
    assert r["cosine_raw"] == pytest.approx(1.0, abs=1e-5) and r["cosine_sign"] == pytest.approx(1.0, abs=1e-5)
    for key in ("knn_accuracy", "cross_model_knn_accuracy", "model_mixing"):
        assert 0.0 <= r[key] <= 1.0


def test_knn_accuracy_on_separated_clusters():
    x = np.r_[np.zeros((20, 2)), np.full((20, 2), 100.0)] + np.random.default_rng(0).normal(size=(40, 2))
    assert geo.knn_accuracy(x, np.repeat([0, 1], 20), k=5) == 1.0
    assert geo.knn_accuracy(x, np.tile([0, 1], 20), k=5) < 0.8
    real = np.random.default_rng(1).normal(size=(200, 5))  # twins: "adversarial" = real + tiny shift
    both, is_adv, twin = np.r_[real, real + 1e-4], np.repeat([0, 1], 200), np.r_[np.arange(200), np.arange(200)]
    assert geo.knn_accuracy(both, is_adv, k=1) == 0.0  # each point's nearest neighbour is its twin
    assert 0.3 < geo.knn_accuracy(both, is_adv, k=1, groups=twin) < 0.7  # without twins: chance


def test_ood_auroc_on_a_trivially_separable_case(model):
    m, data = model
    cal, ev = slice(0, 150), slice(150, 450)
    noise = torch.rand(300, *data.shape, generator=torch.Generator().manual_seed(0))
    r = geo.ood_scores(m, data, data.x_test[ev], noise, data.x_test[cal], data.y_test[cal], k=10, n_fit=600)
    for key in ("auroc_credibility", "auroc_softmax"):
        assert 0.0 <= r[key] <= 1.0
    assert r["auroc_credibility"] > 0.9
    assert r["credibility_in"].shape == (300,) and r["logits_out"].shape == (300, 10)
    flipped = geo.ood_scores(m, data, noise, data.x_test[ev], data.x_test[cal], data.y_test[cal], k=10, n_fit=600)
    assert flipped["auroc_credibility"] == pytest.approx(1 - r["auroc_credibility"])


def test_synthetic_ood_data(tiny):
    data = geo.load(tiny, "digits")
    shuffled = geo.load(tiny, "shuffled", like=data)
    assert shuffled.x_test.shape == data.x_test.shape and shuffled.x_train is None
    assert torch.equal(shuffled.x_test.flatten(1).sort(1).values, data.x_test.flatten(1).sort(1).values)
    assert not torch.equal(shuffled.x_test, data.x_test)
    noise = geo.load(tiny, "noise", like=data)
    assert noise.x_test.min() >= 0 and noise.x_test.max() <= 1
    with pytest.raises(ValueError, match="unknown dataset"):
        geo.load(tiny, "imagenet")
    with pytest.raises(ValueError, match="in-distribution"):
        geo.load(tiny, "noise")


def test_real_vs_adversarial_shapes(model):
    m, data = model
    x, y = data.x_test[:40], data.y_test[:40]
    r = geo.real_vs_adversarial(m, x, y, FGSM(m, 0.2), "conv1", k=5, perplexity=10.0)
    assert r["embedding"].shape == (80, 2) and r["is_adversarial"].sum() == 40
    assert r["adversarial_accuracy"] < r["clean_accuracy"]
    assert 0 <= r["knn_accuracy_layer"] <= 1 and 0 <= r["knn_accuracy_tsne"] <= 1


def test_layer_entanglement(model):
    m, data = model
    rows = layer_entanglement(m, data.x_test[:64], data.y_test[:64], temperature=100.0)
    assert list(rows) == ["conv1", "conv2", "fc1", "fc2", "logits"] == list(LAYER_MAP)
    for r in rows.values():
        assert np.isfinite(r["entanglement"]) and r["entanglement"] >= 0 and r["snnl_at_T"] >= 0
    assert set(LAYER_MAP.values()) - {None} == set(PAPER_TABLE2)


def test_pgd_schedule_switches_after_warmup():
    m = CNN((1, 8, 8))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    s = PGDSchedule(eps=0.1, alpha=0.02, steps=3, warmup_steps=2, warmup_pgd_steps=1, warmup_alpha=0.1)
    for _ in range(3):
        adv = s(m, x, y)
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert s.step == 3
    ramp = PGDSchedule(eps=0.2, alpha=0.05, steps=2, eps_ramp=4)
    assert (ramp(m, x, y) - x).abs().max() <= 0.05 + 1e-6  # first call: eps / 4


def test_second_seed_models_have_their_own_steps_and_folder(tiny, tmp_path):
    cfg = replace(tiny, checkpoint_root=str(tmp_path), second_seed_steps=30, second_seed_experiment="other",
                  second_seed_checkpoint="x_{dataset}_a{alpha:g}_s{seed}_{steps}")
    first, second = geo.model_config(cfg, "digits", 10.0, 0), geo.model_config(cfg, "digits", 10.0, 1)
    assert (first.steps, first.experiment, second.steps, second.experiment) == (80, "geometry", 30, "other")
    assert geo.checkpoint_dir(cfg, second).name == "x_digits_a10_s1_30"
    assert geo.checkpoint_dir(cfg, first).name == "geometry_digits_a10_s0"
    paper = replace(geo.config_for("paper"), checkpoint_root=str(tmp_path / "runs"))
    t1 = geo.model_config(paper, "fashion-mnist", 0.0, 0)
    assert geo.checkpoint_dir(paper, t1).name == "table1_fashion-mnist_a0_s0"  # Table 1's own folder name
    (tmp_path / "runs" / "t1_fmnist_a0_s0").mkdir(parents=True)  # the older name, still accepted
    assert geo.checkpoint_dir(paper, t1).name == "t1_fmnist_a0_s0"
    (tmp_path / "runs" / "table1_fashion-mnist_a0_s0").mkdir()  # both: the current name wins
    assert geo.checkpoint_dir(paper, t1).name == "table1_fashion-mnist_a0_s0"


def test_table2_pgd_model_is_more_robust_and_records(tiny, tmp_path):
    res = run_table2(tiny, tmp_path)
    acc = res["accuracy"]
    assert acc["pgd"]["pgd"] > acc["baseline"]["pgd"] + 0.1, acc
    rec = read_record(res["record"]["path"])
    assert rec["experiment"] == "table2" and "adversarial_training" in rec["config"]
    assert rec["metrics"]["rows"]["conv1"]["paper_pgd"] == 2.21
    table = table2_rows(res["rows"])
    rows = robustness.report_items({"table2": [rec]})  # the report reads the record run_table2 wrote
    assert len(rows) == 4 and all(r["status"] in (HOLDS, FAILS, INCONCLUSIVE) and r["runs"] for r in rows)
    assert [r["layer (ours)"] for r in table] == list(LAYER_MAP)
    assert robustness.table_table2(rec) == robustness.table_table2(res["record"])  # a committed record, this run
    assert robustness.table_table2(rec).count("\n| ") == len(LAYER_MAP) + 1 + 2  # layers, header; models


def test_run_all_writes_one_record_per_part(tiny, tmp_path):
    out = geo.run_all(tiny, tmp_path, parts=("gradients", "ood", "hidden"))
    names = {p.name.split("_digits")[0] for p in tmp_path.glob("*.json")}
    assert names == {"adversarial_gradients", "ood", "hidden_adversarial"}
    g = read_record(out["gradients"]["record"]["path"])
    assert set(g["metrics"]) == {"baseline", "entangled", "mixed"}
    assert np.asarray(g["history"]["baseline"]["embedding"]).shape == (2 * tiny.n_points, 2)
    o = out["ood"]["models"]
    for r in o.values():
        assert 0 <= r["auroc_credibility"] <= 1 and r["embedding"].shape == (2 * tiny.n_points, 2)
    assert len(list((tmp_path / "models").glob("*.json"))) == 4  # four models trained, one record each
    for module, part in ((adversarial_gradients, "gradients"), (ood, "ood"), (hidden_adversarial, "hidden")):
        rec = read_record(out[part]["record"]["path"])  # the item's report rows read the record its run wrote
        ran = [r for r in module.report_items({rec["experiment"]: [rec]}) if r["runs"]]
        assert len(ran) == 1 and ran[0]["status"] in (HOLDS, FAILS, INCONCLUSIVE) and ran[0]["item"].endswith(f"({rec['dataset']})")
        # a chapter draws this run and a committed record with the same calls
        table, plot = getattr(module, f"table_{part}"), getattr(module, f"plot_{part}")
        assert table(rec) == table(out[part]["record"]) and table(rec).count("\n") == len(rec["metrics"]) + 1
        for r in (rec, out[part]["record"]):
            fig = plot(r)
            assert len(fig.axes) == len(rec["metrics"])
            plt.close(fig)


def test_checkpoints_are_reused_and_unfinished_ones_refused(tiny, tmp_path):
    cfg = replace(tiny, checkpoint_root=str(tmp_path))
    data = geo.load(cfg, "digits")
    m1 = geo.trained_model(cfg, data, 0.0, 0)
    folder = geo.checkpoint_dir(cfg, geo.model_config(cfg, "digits", 0.0, 0))
    assert geo.checkpoint_step(folder) == cfg.train_steps
    m2 = geo.trained_model(cfg, data, 0.0, 0)  # loaded, not retrained: the same weights
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    busy = tmp_path / "busy"
    busy.mkdir()
    torch.save({"step": 5}, busy / "checkpoint.pt")
    with pytest.raises(RuntimeError, match="step 5/10"):
        geo.await_checkpoint(busy, 10, wait=0.0)


def test_cli_rejects_unknown_fields():
    with pytest.raises(SystemExit):
        geo.main(["--set", "n_pointz=3"])


def test_markdown_table_right_aligns_columns_of_numbers():
    rows = [{"model": "baseline", "auroc": 0.8761, "n": 3, "note": None}, {"model": "x", "auroc": None, "n": 4, "note": "a"}]
    lines = geo.markdown_table(rows).splitlines()
    assert lines[0] == "| model | auroc | n | note |"
    assert lines[1] == "|---|---:|---:|---|"  # text and a column with text stay left-aligned
    assert lines[2:] == ["| baseline | 0.876 | 3 | - |", "| x | - | 4 | a |"]
