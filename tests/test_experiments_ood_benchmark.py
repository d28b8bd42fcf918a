"""The OOD benchmark (beyond the paper): metrics against hand-computed cases, the hand-written
scores against brute force, the record layout, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnl.experiments.beyond.benchmark as ob
from snnl.experiments.beyond.detectors import DETECTORS, METRICS, Features, OODDetectors, features, ood_metrics, paper_score
from snnl.models import ZooCNN
from snnl.results import read_record


# ---- metrics ---------------------------------------------------------------------------------
def test_perfectly_separated_scores():
    m = ood_metrics([0.1, 0.2, 0.3], [0.7, 0.8])
    assert m == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    worst = ood_metrics([0.7, 0.8], [0.1, 0.2, 0.3])  # scores pointing the wrong way
    assert worst["auroc"] == 0.0 and worst["fpr95"] == 1.0


def test_small_case_by_hand():
    # in: 0, 2; out: 1, 3. AUROC = P(out > in) = 3 of 4 pairs. PR curve (OOD positive), thresholds
    # 3, 2, 1, 0: (recall, precision) = (.5, 1), (.5, .5), (1, 2/3), (1, .5), plus (0, 1); the
    # trapezoids: .5 * (2/3 + .5) / 2 + .5 * (1 + 1) / 2 = 19/24. AUPR-IN: the mirror image, same.
    m = ood_metrics([0.0, 2.0], [1.0, 3.0])
    assert m["auroc"] == pytest.approx(0.75)
    assert m["aupr_out"] == pytest.approx(19 / 24)
    assert m["aupr_in"] == pytest.approx(19 / 24)
    # FPR@95TPR with in-distribution positive: accept 95% of 2 in-points = both (threshold 2):
    # the OOD point 1 is accepted too -> 1 of 2
    assert m["fpr95"] == pytest.approx(0.5)


def test_fpr95_takes_in_distribution_as_positive():
    # 20 in-points 0..19; 4 OOD points 18.5, 30, 40, 50. Accepting 95% of the in-points (19 of 20,
    # threshold 18) accepts no OOD point: FPR 0. (With OOD positive, as pytorch-ood 0.4 counts it,
    # detecting 95% of the OOD points flags in-point 19: 0.05.)
    m = ood_metrics(np.arange(20.0), [18.5, 30, 40, 50])
    assert m["fpr95"] == 0.0
    assert m["auroc"] == pytest.approx(79 / 80)  # only the pair (19, 18.5) is ordered wrongly


def test_auroc_matches_sklearn_on_random_scores():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(0.7, size=40)
    want = roc_auc_score(np.r_[np.zeros(50), np.ones(40)], np.r_[a, b])
    assert ood_metrics(a, b)["auroc"] == pytest.approx(want)


def test_metric_bad_input():
    with pytest.raises(ValueError, match="OOD: the set is empty"):
        ood_metrics([0.1, 0.2], [])
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics([0.1, float("nan")], [0.3])


# ---- hand-written scores ---------------------------------------------------------------------
def test_paper_score_against_brute_force():
    rng = np.random.default_rng(1)
    nl, pred = rng.integers(0, 4, (30, 3, 7)), rng.integers(0, 4, 30)
    want = [np.mean([np.mean([nl[i, l, j] == pred[i] for j in range(7)]) for l in range(3)]) for i in range(30)]
    np.testing.assert_allclose(paper_score(nl, pred), want)
    with pytest.raises(ValueError, match="paper_score"):
        paper_score(nl[:, 0], pred)


def _normalized(train, x):
    """DkNN preprocessing, by hand: L2-normalise, subtract the training mean of normalised rows."""
    n = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    return n(x) - n(train).mean(0)


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    model = ZooCNN((1, 28, 28), 3).eval()
    g = torch.Generator().manual_seed(0)
    x_tr, x_cal, x_te = (torch.rand(n, 1, 28, 28, generator=g) for n in (60, 20, 15))
    y_tr = torch.arange(60) % 3
    y_cal = torch.arange(20) % 3
    det = OODDetectors(k=5, knn_k=4, batch_size=7).fit(model, features(model, x_tr), y_tr,
                                                        features(model, x_cal), y_cal)
    return model, det, x_tr, y_tr, x_cal, y_cal, x_te


def test_dknn_scores_against_brute_force(fitted):
    model, det, x_tr, y_tr, x_cal, y_cal, x_te = fitted
    f_tr, f_cal, f_te = (features(model, x) for x in (x_tr, x_cal, x_te))
    s = det.score(x_te, f_te)
    assert set(s) == set(DETECTORS) and all(v.shape == (15,) for v in s.values())
    k, y = 5, y_tr.numpy()

    def neighbours(f):  # (N, L, k) labels of the k nearest training points, every layer
        out = []
        for tr, q in zip(f_tr.layers, f.layers):
            a, b = _normalized(tr.astype(np.float64), tr.astype(np.float64)), _normalized(tr, q.astype(np.float64))
            d = ((b[:, None] - a[None]) ** 2).sum(-1)
            out.append(y[np.argsort(d, axis=1, kind="stable")[:, :k]])
        return np.stack(out, 1)

    nb_te, nb_cal = neighbours(f_te), neighbours(f_cal)
    L = nb_te.shape[1]
    pred = f_te.logits.argmax(1)
    frac = [np.mean([np.mean(nb_te[i, l] == pred[i]) for l in range(L - 1)]) for i in range(15)]
    np.testing.assert_allclose(s["paper_knn"], -np.array(frac))
    # DkNN credibility: the largest p-value of the labels, from the calibration nonconformities
    cal = np.array([L * k - (nb_cal[i] == y_cal[i].item()).sum() for i in range(20)])
    cred = [max(np.mean(cal >= L * k - (nb_te[i] == j).sum()) for j in range(3)) for i in range(15)]
    np.testing.assert_allclose(s["dknn"], -np.array(cred))


def test_library_scores_match_their_definitions(fitted):
    model, det, x_tr, y_tr, _, _, x_te = fitted
    f_tr, f_te = features(model, x_tr), features(model, x_te)
    s = det.score(x_te, f_te)
    logits = torch.from_numpy(f_te.logits).double()
    np.testing.assert_allclose(s["msp"], -logits.softmax(1).max(1).values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(s["energy"], -torch.logsumexp(logits, 1).numpy(), rtol=1e-5)
    # KNN (Sun et al.): distance of the normalised feature to the 4th nearest normalised training feature
    n = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    d = np.sqrt(((n(f_te.penultimate)[:, None] - n(f_tr.penultimate)[None]) ** 2).sum(-1))
    np.testing.assert_allclose(s["knn"], np.sort(d, 1)[:, 3], rtol=1e-4, atol=1e-6)


def test_detectors_bad_input(fitted):
    model, det, x_tr, y_tr, x_cal, y_cal, x_te = fitted
    other = ZooCNN((1, 28, 28), 3).eval()
    with pytest.raises(ValueError, match="another model"):
        det.score(x_te, features(other, x_te))
    with pytest.raises(ValueError, match="another model"):
        OODDetectors(k=5).fit(model, features(other, x_tr), y_tr, features(model, x_cal), y_cal)
    with pytest.raises(ValueError, match="empty"):
        features(model, x_te[:0])
    bad = features(model, x_te).layers
    bad[0] = bad[0].copy()
    bad[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Features(bad, "x")
    with pytest.raises(ValueError, match="rows of features"):
        det.score(x_te[:3], features(model, x_te))
    with pytest.raises(RuntimeError, match="fit"):
        OODDetectors().score(x_te, features(model, x_te))


# ---- the run and its records -----------------------------------------------------------------
@pytest.mark.slow
def test_run_records_tables_plot(monkeypatch, tmp_path):
    monkeypatch.setitem(ob.SMALL_RECIPE, "steps", 5)
    cfg = ob.config_for("small", seeds=(0, 1), n_fit=200, n_calibration=40, n_eval=60, n_attack=60, k=10,
                        knn_k=5, eps=(0.3,), attacks=("fgsm",))
    recs = ob.run_ood_benchmark(cfg, tmp_path, log=lambda *_: None)
    # 2 seeds x 2 variants x (shuffled, noise, fgsm-0.3), unless an attack found no outlier
    assert {r["config"]["outliers"] for r in recs} <= {"shuffled", "noise", "fgsm-0.3"}
    assert len([r for r in recs if r["config"]["outliers"] == "noise"]) == 4
    r = read_record(recs[0]["path"])
    assert r["experiment"] == "ood_benchmark" and r["dataset"] == "digits" and r["profile"] == "small"
    assert r["config"]["variant"] in ("baseline", "entangled")
    assert r["config"]["model_source"]["model"] == "zoo"
    assert set(r["metrics"]) == set(DETECTORS)
    for m in r["metrics"].values():
        assert set(m) == set(METRICS) and all(0.0 <= v <= 1.0 for v in m.values())
    rows = ob.table_ood_benchmark(recs)
    noise = [x for x in rows if x["outliers"] == "noise" and x["detector"] == "dknn" and x["variant"] == "baseline"]
    want = np.mean([x["metrics"]["dknn"]["auroc"] for x in recs
                    if x["config"]["outliers"] == "noise" and x["config"]["variant"] == "baseline"])
    assert noise[0]["seeds"] == 2 and noise[0]["auroc"] == pytest.approx(want)
    v = {(x["in"], x["outliers"]): x for x in ob.verdicts(recs)}
    assert v[("digits", "noise")]["seeds"] == 2 and "entangling_helps_dknn" in v[("digits", "noise")]
    items = ob.report_items(recs)
    assert items and all(i["addition"] for i in items)
    fig = ob.plot_ood_benchmark(recs)
    assert len(fig.axes) >= 3


def test_config_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown profile"):
        ob.config_for("huge")
    with pytest.raises(ValueError, match="unknown OODBenchmarkConfig field"):
        ob.config_for("small", n_evall=3)
    with pytest.raises(ValueError, match="in-distribution"):
        ob.config_for("small", datasets=("imagenet",))
    with pytest.raises(ValueError, match="attacks"):
        ob.config_for("small", attacks=("pgd",))
    with pytest.raises(ValueError, match="variants"):
        ob.config_for("small", variants=("robust",))
    assert ob.main(["--profile", "paper", "--datasets", "mnist"]) == 2  # no --models
    assert "--models" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ob.load_model(tmp_path, (1, 28, 28), 10)
    with pytest.raises(ValueError, match="no ood_benchmark records"):
        ob.plot_ood_benchmark([])


def test_unfinished_checkpoint_is_refused(tmp_path):
    model = ZooCNN()
    (tmp_path / "m").mkdir()
    torch.save({"model": model.state_dict(), "step": 5, "config": {"model": "zoo", "steps": 10}},
               tmp_path / "m" / "checkpoint.pt")
    with pytest.raises(RuntimeError, match="unfinished"):
        ob.load_model(tmp_path / "m", (1, 28, 28), 10)
    assert not ob.finished(tmp_path, "mnist", "baseline", 0)  # no folder
    (tmp_path / "zoo-mnist-base_paper_s0").mkdir()
    torch.save({"model": {}, "step": 5, "config": {"model": "zoo", "steps": 10}},
               tmp_path / "zoo-mnist-base_paper_s0" / "checkpoint.pt")
    assert not ob.finished(tmp_path, "mnist", "baseline", 0)  # unfinished


def test_svhn_without_data_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNL_DATA", str(tmp_path))
    cfg = ob.config_for("paper", datasets=("svhn",), models=str(tmp_path))
    with pytest.raises(RuntimeError, match="svhn"):
        ob.run_ood_benchmark(cfg, None, log=lambda *_: None)


def test_overall_line_counts_the_pairs_by_hand():
    # three pairs, 4 paired seeds: DkNN clearly better when entangled on "a", clearly worse on "b",
    # noisy on "c"; every other detector at 0.99, so DkNN ranks last (7 of 7) everywhere
    gain = {"a": [0.10, 0.11, 0.09, 0.10], "b": [-0.10, -0.12, -0.09, -0.11], "c": [0.05, -0.06, 0.04, -0.05]}
    recs = []
    for pair, diffs in gain.items():
        for seed, d in enumerate(diffs):
            for variant, auroc in (("baseline", 0.7), ("entangled", 0.7 + d)):
                m = {det: {k: 0.99 for k in METRICS} for det in DETECTORS}
                m["dknn"] = {k: auroc for k in METRICS}
                recs.append({"experiment": "ood_benchmark", "dataset": "mnist", "seed": seed, "metrics": m,
                             "config": {"outliers": pair, "variant": variant}})
    line = ob.overall_line(recs)
    assert "All 3 pairs" in line
    assert "raises DkNN's AUROC on 1 " in line and "lowers it on 1," in line and "no significant difference on 1" in line
    assert "2 pairs differ after Benjamini-Hochberg" in line
    assert "baseline 7, entangled 7" in line
    assert ob.overall_line([]).startswith("No pair")
