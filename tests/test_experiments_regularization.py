"""snnl.experiments.regularization.table1 (Section 4: Table 1, Figs. 7, 8) at tiny sizes: the paper
recipe is the command line's, the summary statistics are right, records are written and
reused, divergence and substitutes are reported, and the plots draw what they say."""

from __future__ import annotations

from dataclasses import asdict

import matplotlib
import numpy as np
import pytest

import snnl.__main__ as cli
import snnl.train
from conftest import REPO
from snnl.data import DatasetError, load_dataset
from snnl.experiments.common import profiles as common
from snnl.experiments.regularization import fig7, fig8
from snnl.experiments.regularization import table1 as reg
from snnl.experiments.discriminative import representations as rep
from snnl.results import load_records
from snnl.train import TrainingDiverged

matplotlib.use("Agg")
TINY = dict(steps=4, batch_size=32, eval_every=2, log_every=2)


@pytest.fixture(scope="module")
def digits():
    """Part of digits: the runs here are a few steps long, and each evaluation is of the whole
    training and test set."""
    return load_dataset("digits", n_train=256, n_test=128)


def test_paper_recipe_is_the_command_line_run(monkeypatch):
    """table1_config(..., "paper") is the config of `python -m snnl train ... --profile paper`,
    so the notebook reuses the records that command writes."""
    seen = []

    def fake_train(config, **kw):
        seen.append(config)
        raise ValueError("stop")

    monkeypatch.setattr(snnl.train, "train", fake_train)
    cli.main(["train", "--dataset", "mnist", "--alpha", "10", "--model", "cnn", "--steps", "14000",
              "--batch-size", "256", "--lr", "1e-4", "--profile", "paper", "--experiment", "table1", "--seed", "3"])
    assert asdict(seen[0]) == asdict(reg.table1_config("mnist", 10, "paper", seed=3))
    resnet = reg.table1_config("cifar10", 0, "paper")
    assert (resnet.model, resnet.distance, resnet.optimizer, resnet.lr, resnet.size, resnet.channels) == \
        ("resnet", "cosine", "sgd", 0.4, 32, 3)
    assert resnet.lr_decay ** (resnet.steps / resnet.decay_steps) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown profile"):
        reg.table1_config("mnist", 0, "huge")


def test_paper_numbers_are_table1():
    t = reg.PAPER_TABLE1
    assert t["mnist"]["best"] == (99.23, 98.83) and t["mnist"]["mean"] == (99.16, 98.82)
    assert t["fashion-mnist"]["best"] == (91.48, 90.42) and t["fashion-mnist"]["mean"] == (91.06, 90.25)
    assert t["svhn"]["best"] == (88.81, 87.63) and t["svhn"]["mean"] == (89.90, 89.71) and "sic" in t["svhn"]["note"]
    assert t["cifar10"]["best"] == (91.22, 90.78) and t["cifar10"]["mean"] == (89.90, 89.713)
    assert [t[d]["runs"] for d in t] == [4, 4, 4, 100]


def fake_record(dataset, alpha, acc, seed=0, profile="paper"):
    return {"experiment": "table1", "profile": profile, "dataset": dataset, "seed": seed,
            "config": {"alpha": alpha, "steps": 14000}, "metrics": {"test_accuracy": acc}}


def test_summary_statistics_and_paper_columns():
    recs = [fake_record("mnist", 0.0, a, s) for s, a in enumerate((0.98, 0.99, 0.97))]
    recs += [fake_record("mnist", 10.0, 0.995, 0), fake_record("svhn", 10, 0.9, 0), fake_record("digits", -1.0, 0.5)]
    rows = {(r["dataset"], r["variant"]): r for r in reg.table1_summary(recs)}
    base = rows[("mnist", "baseline")]
    assert base["runs"] == 3 and base["seeds"] == [0, 1, 2]
    assert base["best"] == pytest.approx(99.0) and base["mean"] == pytest.approx(98.0)
    assert base["std"] == pytest.approx(np.std([98, 99, 97], ddof=1))
    assert (base["paper_best"], base["paper_mean"], base["paper_runs"]) == (98.83, 98.82, 4)
    ent = rows[("mnist", "entangled")]
    assert ent["std"] is None and (ent["paper_best"], ent["paper_mean"]) == (99.23, 99.16)
    assert rows[("svhn", "entangled")]["note"].startswith("(sic)")
    dis = rows[("digits", "disentangled")]
    assert dis["paper_best"] is None and dis["alpha"] == -1.0
    other = fake_record("mnist", 10.0, 0.5, 1)  # another regulariser: a row of its own, no paper column
    other["config"]["regularizer"] = "snnl-reference"
    extra = {(r["dataset"], r["variant"]): r for r in reg.table1_summary(recs + [other])}
    assert extra[("mnist", "entangled")]["runs"] == 1 and extra[("mnist", "entangled")]["best"] == 99.5
    assert extra[("mnist", "entangled (snnl-reference)")]["paper_best"] is None
    assert reg.table1_missing([other]) == reg.table1_missing([])  # it stands in for no Table 1 run
    # a baseline trains no regulariser: the same config (and record) whichever is asked for
    assert reg.table1_config("mnist", 0.0, "paper", regularizer="snnl-reference").regularizer == "snnl"
    assert reg.table1_config("mnist", 10.0, "paper", regularizer="snnl-reference").regularizer == "snnl-reference"
    table = reg.format_table1(reg.table1_summary(recs))
    assert reg.table_table1(recs) == table  # the chapter's one call, for this run or the committed records
    assert "| paper | mnist | baseline | 0 | 14000 | 3 (paper 4) | 99.00 | 98.83 | 98.00 ± 1.00 | 98.82 |" in table
    assert "89.90 (sic) |" in table and "| – |" in table
    assert reg.table1_missing(recs) == ["fashion-mnist baseline (alpha=0)", "fashion-mnist entangled (alpha=10)",
                                        "svhn baseline (alpha=0)", "cifar10 baseline (alpha=0)",
                                        "cifar10 entangled (alpha=10)"]


def test_summary_reads_the_committed_paper_records():
    rows = reg.table1_summary(load_records(REPO / "results", "table1", profile="paper"))
    for r in rows:
        assert r["profile"] == "paper" and r["runs"] >= 1 and 0 <= r["mean"] <= r["best"] <= 100


def test_table1_runs_writes_and_reuses(digits, tmp_path, monkeypatch):
    recs = reg.table1("digits", runs=2, alphas=(0, 10), seed0=5, data=digits, out_dir=tmp_path, progress=False,
                      **TINY)
    assert [(r["config"]["alpha"], r["seed"]) for r in recs] == [(0.0, 5), (0.0, 6), (10.0, 5), (10.0, 6)]
    assert all(r["experiment"] == "table1" and r["profile"] == "small" for r in recs)
    assert len(load_records(tmp_path, "table1")) == 4
    rows = reg.table1_summary(recs)
    assert [(r["variant"], r["runs"]) for r in rows] == [("baseline", 2), ("entangled", 2)]
    monkeypatch.setattr(reg, "train", lambda *a, **k: pytest.fail("trained again instead of reusing"))
    again = reg.table1("digits", runs=2, alphas=(0, 10), seed0=5, data=digits, out_dir=tmp_path, reuse=True, **TINY)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in recs]
    with pytest.raises(ValueError, match="runs must be >= 1"):
        reg.table1("digits", runs=0)


def test_table1_resumes_from_checkpoints(digits, tmp_path):
    recs = reg.table1("digits", runs=1, alphas=(10,), data=digits, checkpoint_root=tmp_path, progress=False, **TINY)
    assert (tmp_path / "table1_digits_a10_s0" / "checkpoint.pt").exists()
    again = reg.table1("digits", runs=1, alphas=(10,), data=digits, checkpoint_root=tmp_path, progress=False, **TINY)
    assert again[0]["metrics"] == recs[0]["metrics"]


def test_figure7_grid_keeps_diverged_runs(digits, monkeypatch, tmp_path):
    real = rep.train_recorded

    def maybe_diverge(cfg, *a, **k):
        if cfg.alpha < 0:
            raise TrainingDiverged("non-finite loss at step 3")
        return real(cfg, *a, **k)

    monkeypatch.setattr(fig7, "train_recorded", maybe_diverge)
    f7 = fig7.figure7("small", alphas=(-1, 0, 1), data=digits, out_dir=tmp_path, progress=False, **TINY)
    assert f7["alpha"] == [-1.0, 0.0, 1.0] and f7["diverged"] == [True, False, False]
    assert f7["test_accuracy"][0] is None and all(0 <= a <= 1 for a in f7["test_accuracy"][1:])
    assert [r["experiment"] for r in load_records(tmp_path)] == ["fig7", "fig7"]
    ax = fig7.plot_figure7(f7)
    assert ax.get_xscale() == "symlog" and len(ax.collections) == 3  # alpha > 0, alpha = 0, the diverged marker
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [  # every colour explained
        "alpha > 0: maximises entanglement", "alpha = 0: cross-entropy only", "diverged (no accuracy)"]
    assert fig7.figure7("paper", alphas=(), data=digits)["substitute_for"].startswith("the CIFAR-10 ResNet")


def test_figure8_curves_and_overfitting(digits, tmp_path):
    f8 = fig8.figure8("small", runs=2, data=digits, out_dir=tmp_path, progress=False, **{**TINY, "steps": 6})
    assert f8.eval_step == [2, 4, 6] and set(f8.curves) == {"baseline", "entangled"} and f8.runs == 2
    recs = load_records(tmp_path, "fig8")
    assert len(recs) == 4
    base = [r["history"]["test_ce"] for r in recs if r["config"]["alpha"] == 0]
    assert f8.curves["baseline"]["test_ce"] == pytest.approx(np.mean(base, axis=0).tolist())
    o = f8.overfitting()["baseline"]
    c = f8.curves["baseline"]
    assert o["min_test_ce"] == min(c["test_ce"])
    assert o["final_gap"] == pytest.approx(c["test_ce"][-1] - c["train_ce"][-1])
    fig = fig8.plot_figure8(f8)
    assert [len(ax.lines) for ax in fig.axes] == [4, 4]


def test_figure8_labels_the_svhn_substitute(monkeypatch, tmp_path):
    def fake_load(name, **kw):
        if name == "svhn":
            raise DatasetError("svhn: data not found")
        assert name == "fashion-mnist"
        return load_dataset("digits", n_train=64, n_test=32)

    monkeypatch.setattr(common, "load_dataset", fake_load)  # load_or_substitute's
    with pytest.warns(UserWarning, match="substitute for SVHN"):
        f8 = fig8.figure8("paper", runs=1, alphas=(0,), out_dir=tmp_path, progress=False, **TINY)
    assert f8.substitute_for == "svhn"
    [rec] = load_records(tmp_path, "fig8")
    assert rec["config"]["substitute_for"] == "svhn" and rec["profile"] == "paper"
    assert "substitute for svhn" in fig8.plot_figure8(f8).axes[0].get_title()
