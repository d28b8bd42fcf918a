"""Tests for snnl.experiments.loss.synthetic (paper Section 2, Apps. A, B) at tiny sizes: each
experiment's qualitative claim holds numerically, and the measurements are right."""

from __future__ import annotations

import math
import time

import matplotlib
import numpy as np
import pytest
import torch

from snnl.experiments.loss import synthetic
from snnl.experiments.common.rows import HOLDS
from snnl.results import read_record

matplotlib.use("Agg")


# ----------------------------------------------------------------------------------------------
# measurements
def test_radial_cv_is_zero_on_a_circle_and_about_half_for_a_gaussian():
    angle = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    circle = 3.0 * np.stack([np.cos(angle), np.sin(angle)], 1) + 5.0
    assert synthetic.radial_cv(circle) < 1e-9
    gauss = np.random.default_rng(0).standard_normal((20_000, 2))
    assert synthetic.radial_cv(gauss) == pytest.approx(math.sqrt(4 / math.pi - 1), abs=0.01)  # Rayleigh


def test_neighbour_purity():
    x = np.array([[0.0, 0], [0.1, 0], [5, 0], [5.1, 0], [10, 0], [10.1, 0]])
    assert synthetic.neighbour_purity(x, np.array([0, 0, 1, 1, 2, 2])) == 1.0
    assert synthetic.neighbour_purity(x, np.array([0, 1, 0, 1, 0, 1])) == 0.0
    assert synthetic.neighbour_purity(x, np.array([0, 0, 1, 1, 0, 0]), k=2) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="k must be"):
        synthetic.neighbour_purity(x, np.zeros(6), k=6)


def test_mode_split_ari():
    rng = np.random.default_rng(0)
    modes = np.repeat([0, 1], 20)
    labels = np.zeros(40, int)
    apart = rng.normal(size=(40, 2)) * 0.1 + np.where(modes[:, None] == 0, -5.0, 5.0)
    merged = rng.normal(size=(40, 2))
    assert synthetic.mode_split_ari(apart, labels, modes) == pytest.approx(1.0)
    assert synthetic.mode_split_ari(merged, labels, modes) < 0.3


# ----------------------------------------------------------------------------------------------
# Fig. 1: minimising isolates the classes
def test_figure1_minimising_separates_random_labels(tmp_path):
    t0 = time.perf_counter()
    r = synthetic.figure1(n=60, classes=3, steps=150, seed=1, out_dir=tmp_path)
    seconds = time.perf_counter() - t0
    a, b = r["metrics"]["initial"], r["metrics"]["final"]
    assert r["initial"].shape == r["final"].shape == (60, 2) and r["labels"].shape == (60,)
    assert b["loss"] < 0.2 * a["loss"]  # the loss falls ...
    assert r["loss"][-1] < r["loss"][0]
    assert a["purity"] < 0.7 and b["purity"] > 0.95  # ... and nearest neighbours become pure
    assert b["entanglement"] < a["entanglement"]
    (path,) = tmp_path.glob("figure1_*.json")
    rec = read_record(path)
    assert rec["experiment"] == "figure1" and rec["metrics"]["final"]["purity"] == b["purity"]
    assert len(rec["history"]["loss"]) == 150
    [row] = [i for i in synthetic.report_items({"figure1": [rec]}) if i["runs"]]  # the row of the record it wrote
    assert row["status"] == HOLDS and row["runs"] == 1  # purity up, loss down
    table = synthetic.table_points(rec)  # the chapter's table: the same for this run's record and the saved one
    assert table == synthetic.table_points(r["record"]) and table.splitlines()[2].startswith("| initial |")
    assert 0.5 * seconds <= rec["wall_seconds"] <= seconds  # the record's clock covers the descent


def test_figure1_is_deterministic():
    a = synthetic.figure1(n=30, steps=20, seed=3)
    b = synthetic.figure1(n=30, steps=20, seed=3)
    np.testing.assert_array_equal(a["final"], b["final"])


def test_one_thread_restores_the_thread_count():
    n = torch.get_num_threads()
    synthetic.figure1(n=20, steps=2)
    assert torch.get_num_threads() == n


# ----------------------------------------------------------------------------------------------
# Fig. 13: two modes per class are kept
def fewer_resamples(mp: pytest.MonkeyPatch, n: int = 30) -> None:
    """Fig. 13's bootstrap interval of the final split's ARI from ``n`` resamples instead of 300:
    each resample is a 2-means fit (10 starts) per class, 4 CPU-seconds for the 300."""
    real = synthetic.bootstrap_ci
    mp.setattr(synthetic, "bootstrap_ci", lambda data, statistic, **kw: real(data, statistic,
                                                                             **{**kw, "n_resamples": n}))


@pytest.fixture(scope="module")
def figure13_few_steps():
    """Fig. 13 after 3 steps, for the tests of its layout and of its plot."""
    with pytest.MonkeyPatch.context() as mp:
        fewer_resamples(mp)
        return synthetic.figure13(per_mode=10, classes=4, steps=3, seed=0)


def test_figure13_minimising_keeps_both_modes_of_each_class(monkeypatch):
    fewer_resamples(monkeypatch)
    r = synthetic.figure13(per_mode=12, steps=200, seed=0)
    a, b = r["metrics"]["initial"], r["metrics"]["final"]
    assert a["purity"] < 0.8 and b["purity"] > 0.95  # entangled at the start, separated after
    assert b["loss"] < 0.2 * a["loss"]
    assert a["mode_ari"] > 0.95 and b["mode_ari"] > 0.8  # the two modes remain two groups (merged: ~0)
    assert b["mode_gap"] > 0.7 * a["mode_gap"]  # and stay far apart relative to the whole cloud
    lo, hi = b["mode_ari_ci"]  # the bootstrap interval of the final ARI (the report's criterion)
    assert lo <= b["mode_ari"] <= hi <= 1.0


def test_figure13_layout_mixes_classes_at_each_site(figure13_few_steps):
    r = figure13_few_steps
    y, modes = r["labels"], r["modes"]
    assert np.bincount(y).tolist() == [20] * 4 and np.bincount(modes).tolist() == [40, 40]
    # class c's mode 1 sits at the same site as class c+1's mode 0
    for c in range(4):
        here = r["initial"][(y == c) & (modes == 1)].mean(0)
        there = r["initial"][(y == (c + 1) % 4) & (modes == 0)].mean(0)
        assert np.linalg.norm(here - there) < 1.0


# ----------------------------------------------------------------------------------------------
# Fig. 2: triplet vs soft nearest neighbor, minimised and maximised from the same start
def test_figure2_minimising_either_loss_separates_and_maximising_raises_it(tmp_path):
    r = synthetic.figure2(n=60, classes=3, steps=150, seed=2, out_dir=tmp_path)
    m = r["metrics"]
    assert set(r["points"]) == {("snnl", "min"), ("snnl", "max"), ("triplet", "min"), ("triplet", "max")}
    for loss in ("snnl", "triplet"):
        assert m[f"{loss}_min"]["objective_end"] < 0.5 * m[f"{loss}_min"]["objective_start"]
        assert m[f"{loss}_max"]["objective_end"] > 2 * m[f"{loss}_max"]["objective_start"]
        assert m[f"{loss}_min"]["purity"] > 0.9 > m["start"]["purity"]  # both separate the classes
        assert m[f"{loss}_min"]["objective_start"] == m[f"{loss}_max"]["objective_start"]  # same start
    assert m["snnl_min"]["loss"] < m["start"]["loss"] < m["snnl_max"]["loss"]
    assert m["triplet_min"]["radial_cv"] < m["start"]["radial_cv"]  # minimised triplet: clusters on a ring
    for key, x in r["points"].items():
        assert synthetic.radial_cv(x) == pytest.approx(m["_".join(key)]["radial_cv"])
    assert read_record(next(tmp_path.glob("figure2_*.json")))["metrics"]["start"]["purity"] == m["start"]["purity"]


# ----------------------------------------------------------------------------------------------
# Eq. 2: the temperature curve
def test_temperature_curve_marks_the_minimum_over_t():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = rng.standard_normal((60, 5)) + 1.5 * np.eye(5)[y]  # partly separated classes
    r = synthetic.temperature_curve(x, y, num=31)
    assert len(r["temperature"]) == len(r["loss"]) == 31
    assert np.all(np.diff(r["temperature"]) > 0)
    assert r["entanglement"] <= r["loss"].min() + 1e-9  # a minimum over T ...
    assert r["temperature"][0] < r["argmin"] < r["temperature"][-1] and not r["at_boundary"]  # ... inside


def test_temperature_curve_random_labels_and_separated_classes():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 2)), np.repeat([0, 1, 2, 3], 10)
    r = synthetic.temperature_curve(x, y)
    limit = math.log(39 / 9)  # T -> infinity: every neighbour alike, log((b - 1) / (n_c - 1))
    assert r["loss"][-1] == pytest.approx(limit, abs=1e-2)
    assert r["entanglement"] <= r["loss"].min() + 1e-9
    assert r["entanglement"] == pytest.approx(limit, abs=1e-2)  # nothing beats random sampling
    sep = synthetic.temperature_curve(x + 20.0 * np.eye(4)[y, :2] + 20.0 * np.eye(4)[y, 2:3] * [1, -1], y)
    assert sep["entanglement"] < 1e-6 and sep["at_boundary"]
    assert sep["argmin"] == pytest.approx(sep["temperature"][0])


def test_temperature_curve_default_data_and_cosine(tmp_path):
    r = synthetic.temperature_curve(n=50, out_dir=tmp_path, distance="cosine")
    assert r["entanglement"] <= r["loss"].min() + 1e-9
    assert read_record(next(tmp_path.glob("temperature_curve_*.json")))["config"]["distance"] == "cosine"


# ----------------------------------------------------------------------------------------------
# plots
def test_plots_draw_every_panel(figure13_few_steps):
    import matplotlib.pyplot as plt

    from snnl import plots

    f1 = synthetic.figure1(n=20, steps=3)
    assert len(plots.plot_figure1(f1).axes) == 3
    assert len(plots.plot_figure13(figure13_few_steps).axes) == 2
    assert len(plots.plot_figure2(synthetic.figure2(n=20, steps=3)).axes) == 6
    tc = synthetic.temperature_curve(f1["initial"], f1["labels"], num=11)
    fig = plots.plot_temperature_curve(tc, tc, names=["a", "b"])
    assert len(fig.axes[0].get_lines()) == 4  # two curves, two minima
    plt.close("all")
