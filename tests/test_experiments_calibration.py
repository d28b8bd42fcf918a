"""Tests for snnl.experiments.adversarial.calibration (Section 5, Figs. 9, 14, 18-20), at tiny sizes."""

import math
import time
from dataclasses import asdict

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from snnl.experiments.adversarial import calibration as cal
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE  # noqa: E402
from snnl.results import read_record  # noqa: E402
from snnl.train import TrainConfig  # noqa: E402

EPS = (0.0, 0.1, 0.3)


def tiny(**kw):
    base = dict(steps=40, batch_size=64, lr=3e-3, eps=EPS, bim_steps=3, bim_alpha=0.1, n_test=60,
                n_calibration=60, k=10, device="cpu")
    return cal.make_config("small", **{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """All four models, the sweep and the transfer matrix, sharing one cache; records written."""
    out = tmp_path_factory.mktemp("records")
    config, cache = tiny(), {}
    models = cal.train_models(config, roles=cal.roles_needed(config, transfer=True), progress=False)
    t0 = time.perf_counter()
    sweep = cal.credibility_sweep(config, models, out_dir=out, cache=cache, progress=False)
    sweep["measured_seconds"] = time.perf_counter() - t0
    transfer = cal.transfer_matrix(config, models, out_dir=out, cache=cache, progress=False)
    return config, models, sweep, transfer, out


def test_sweep_shapes_and_ranges(run):
    config, _, sweep, _, _ = run
    m = sweep["metrics"]
    assert m["eps"] == list(EPS) and set(m["curves"]) == {"baseline", "entangled"}
    for curves in m["curves"].values():
        assert set(curves) == set(cal.ATTACKS)
        for c in curves.values():
            for key in ("accuracy", "credibility", "model_accuracy"):
                assert len(c[key]) == len(EPS) and all(0 <= v <= 1 for v in c[key])
            # accuracies are fractions of the attacked points
            assert all(abs(v * config.n_test - round(v * config.n_test)) < 1e-9 for v in c["accuracy"])
    assert len(m["summary"]) == 2 * len(cal.ATTACKS)
    for row in m["summary"]:
        c = m["curves"][row["model"]][row["attack"]]
        assert row["gap"] == pytest.approx(np.mean(np.abs(np.subtract(c["credibility"], c["accuracy"]))))
        assert math.isnan(row["pearson"]) or -1 - 1e-9 <= row["pearson"] <= 1 + 1e-9


def test_white_box_attacks_lower_accuracy(run):
    _, _, sweep, _, _ = run
    for curves in sweep["metrics"]["curves"].values():
        for attack in ("fgsm", "bim"):
            c = curves[attack]
            assert c["accuracy"][0] >= c["accuracy"][-1]
            assert c["model_accuracy"][0] > c["model_accuracy"][-1]


def test_eps_zero_is_the_clean_data_and_sources_are_the_documented_models(run):
    _, _, sweep, _, _ = run
    curves = sweep["metrics"]["curves"]
    for v, c in curves.items():
        assert len({(c[a]["accuracy"][0], c[a]["credibility"][0]) for a in cal.ATTACKS}) == 1
        assert c["fgsm"]["source"] == c["bim"]["source"] == v
        assert c["bim_zero"]["source"] == "baseline_source"
        assert c["bim_source"]["source"] == f"{v}_source"
    # for the baseline, source and zero knowledge are the same cross-entropy model
    assert curves["baseline"]["bim_source"] == curves["baseline"]["bim_zero"]


def test_transfer_matrix_pairs_and_consistency_with_the_sweep(run):
    _, _, sweep, transfer, _ = run
    pairs = transfer["metrics"]["pairs"]
    assert len(pairs) == 2 * 4
    kinds = {(p["source"], p["victim"]): p["kind"] for p in pairs}
    assert kinds[("baseline", "baseline")] == "white box"
    assert kinds[("entangled", "baseline")] == kinds[("baseline_source", "entangled")] == "cross loss"
    assert kinds[("entangled_source", "entangled")] == "same loss"
    curves = sweep["metrics"]["curves"]
    for p in pairs:
        if p["source"] == p["victim"]:
            assert p["accuracy"] == curves[p["victim"]]["bim"]["accuracy"]
        assert p["mean_model_accuracy"] == pytest.approx(np.mean(p["model_accuracy"][1:]))


def test_records_written(run):
    _, _, sweep, transfer, out = run
    names = sorted(p.name.split("_digits")[0] for p in out.glob("*.json"))
    assert names == ["dknn_calibration", "transferability"]
    rec = read_record(sweep["path"])
    assert rec["experiment"] == "dknn_calibration" and rec["profile"] == "small"
    assert set(rec["metrics"]["test_accuracy"]) == set(rec["config"]["models"])
    assert set(rec["config"]["models"]) == {"baseline", "entangled", "baseline_source", "entangled_source"}
    assert rec["config"]["dknn_layers"] == ["conv1", "conv2", "fc1", "fc2", "logits"]
    assert rec["config"]["models"]["entangled_source"]["seed"] == 1
    assert any("BIM: 3 steps" in n for n in rec["config"]["notes"])
    assert read_record(transfer["path"])["metrics"]["eps"] == list(EPS)
    # the report's rows read the records these runs wrote (here standing for the paper's MNIST)
    as_mnist = lambda r: {**r, "dataset": "mnist"}
    ran = [r for r in cal.report_items({"dknn_calibration": [as_mnist(rec)],
                                        "transferability": [as_mnist(read_record(transfer["path"]))]}) if r["runs"]]
    assert {r["experiment"] for r in ran} == {"dknn_calibration", "transferability"}
    assert all(r["status"] in (HOLDS, FAILS, INCONCLUSIVE) for r in ran), [(r["item"], r["status"]) for r in ran]
    # the wall time covers the sweep (the record is started with it, not when it is written)
    assert 0.5 * sweep["measured_seconds"] <= rec["wall_seconds"] <= sweep["measured_seconds"] + 0.01


def test_plots_and_table(run):
    _, _, sweep, transfer, _ = run
    fig = cal.plot_calibration(sweep)
    assert len(fig.axes) == 4 and all(len(ax.lines) == 3 for ax in fig.axes)  # identity + 2 models
    # a record of fewer attacks (Fig. 14: FGSM and BIM) gets a panel per attack it ran, none empty
    two = {**sweep, "metrics": {**sweep["metrics"], "curves": {
        v: {a: c[a] for a in ("fgsm", "bim")} for v, c in sweep["metrics"]["curves"].items()}}}
    fig = cal.plot_calibration(two)
    assert [ax.get_title() for ax in fig.axes] == [cal.TITLES["fgsm"], cal.TITLES["bim"]]
    assert all(len(ax.lines) == 3 and not ax.texts for ax in fig.axes)
    assert len(cal.plot_transfer(transfer).axes) == 2
    table = cal.summary_table([sweep]).splitlines()
    assert len(table) == 2 + 2 * len(cal.ATTACKS) and "| entangled | bim_zero |" in table[-1]
    rows = cal.transfer_table([transfer]).splitlines()[2:]
    assert len(rows) == 8
    pair = transfer["metrics"]["pairs"][0]
    assert rows[0].split(" | ")[5] == f"{np.mean(pair['model_accuracy'][1:]):.3f}"
    # one record, this run's or a committed one: the same tables and numbers
    assert cal.table_calibration(read_record(sweep["path"])) == cal.summary_table([sweep])
    assert cal.table_transfer(read_record(transfer["path"])) == cal.transfer_table([transfer])
    clean = cal.clean_credibility(read_record(sweep["path"]))
    assert clean == {v: c["fgsm"]["credibility"][0] for v, c in sweep["metrics"]["curves"].items()}
    acc = cal.transfer_accuracy(read_record(transfer["path"]))
    assert acc[(pair["source"], pair["victim"])] == pair["mean_model_accuracy"] and len(acc) == 8


def test_triplet_sweep_reuses_the_baseline(run, tmp_path):
    _, models, _, _, _ = run
    config = tiny(regularizer="triplet", attacks=("fgsm",))
    assert config.alpha == 1e-4 and config.name == "triplet"
    trip = cal.train_models(config, known=models, progress=False)
    assert set(trip) == {"baseline", "triplet"} and trip["baseline"] is models["baseline"]
    assert trip["triplet"].config.regularizer == "triplet"
    rec = cal.credibility_sweep(config, trip, out_dir=tmp_path, progress=False)
    assert rec["experiment"] == "dknn_calibration_triplet" and list(rec["metrics"]["curves"]["triplet"]) == ["fgsm"]
    assert len(list(tmp_path.glob("dknn_calibration_triplet_*.json"))) == 1


def test_compare_counts_wins_and_never_lets_nan_win():
    rec = {"config": {"attacks": ["fgsm", "bim"]}, "metrics": {"summary": [
        {"model": "baseline", "attack": "fgsm", "pearson": 0.5, "gap": 0.3},
        {"model": "entangled", "attack": "fgsm", "pearson": 0.9, "gap": 0.4},
        {"model": "baseline", "attack": "bim", "pearson": 0.1, "gap": 0.3},
        {"model": "entangled", "attack": "bim", "pearson": None, "gap": 0.2}]}}
    assert cal.compare(rec) == {"attacks": ["fgsm", "bim"], "pearson_better": ["fgsm"], "gap_smaller": ["bim"]}


def test_calibration_stats_by_hand():
    # acc deviations (.4, 0, -.4), cred deviations (.1, .1, -.2): r = .12 / sqrt(.32 * .06) = sqrt(3)/2
    s = cal.calibration_stats([1.0, 0.6, 0.2], [0.5, 0.5, 0.2])
    assert s["pearson"] == pytest.approx(math.sqrt(3) / 2) and s["gap"] == pytest.approx(0.2)
    s = cal.calibration_stats([1.0, 0.5, 0.0], [0.8, 0.5, 0.2])
    assert s["pearson"] == pytest.approx(1.0) and s["gap"] == pytest.approx(0.4 / 3)
    assert math.isnan(cal.calibration_stats([0.5, 0.5], [0.1, 0.9])["pearson"])  # constant accuracy
    with pytest.raises(ValueError, match="same length"):
        cal.calibration_stats([1.0, 0.5], [0.2])


def test_split_is_disjoint_and_checked():
    t, c = cal.split_test(100, 30, 50, seed=0)
    assert len(t) == 30 and len(c) == 50 and not set(t) & set(c)
    assert np.array_equal(t, cal.split_test(100, 30, 50, seed=0)[0])
    with pytest.raises(ValueError, match="exceeds"):
        cal.split_test(100, 60, 50, seed=0)


def test_paper_victims_are_the_table1_models():
    """The paper profile's victims must equal Table 1's configs, so their checkpoints are reused."""
    roles = cal.model_configs(cal.make_config("paper", dataset="fashion-mnist"))
    for role, alpha in (("baseline", 0.0), ("entangled", 10.0)):
        table1 = TrainConfig(dataset="fashion-mnist", model="cnn", alpha=alpha, steps=14000, batch_size=256,
                             lr=1e-4, profile="paper", experiment="table1", seed=0)
        assert asdict(roles[role]) == asdict(table1)
    assert roles["entangled_source"].seed == 1 and roles["entangled_source"].steps == cal.SETTINGS["paper"]["source_steps"]


@pytest.mark.parametrize("kw, match", [
    (dict(alpha=0.0), "alpha"), (dict(attacks=("cw",)), "attack"), (dict(eps=(0.2, 0.1)), "eps"),
    (dict(eps=(0.1,)), "eps"), (dict(regularizer="nca"), "regularizer"), (dict(bim_steps=0), "bim_steps"),
    (dict(profile="huge"), "profile"),
])
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        cal.CalibrationConfig(**kw)


def test_cli_refuses_an_unfinished_victim(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cal.main(["--victim-dir", f"baseline={tmp_path}"])
    assert "no finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cal.main(["--victim-dir", f"victim={tmp_path}"])
    assert "unknown role" in capsys.readouterr().err
