"""Figs. 12, 21 (paper Section 5.3, App. G): out-of-distribution inputs in entangled models.

t-SNE of the logits of in-distribution and out-of-distribution test data (a second dataset, or
pixel-shuffled / noise images, :data:`snnl.experiments.ood.base.SYNTHETIC_OOD`); the entangled
model puts the OOD data apart. Number added: the AUROC of Deep k-NN credibility (and of the
softmax maximum) for telling in- from out-of-distribution inputs. Configuration, models and the
t-SNE helper: :mod:`snnl.experiments.ood.base`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from snnl.data import Dataset
from snnl.dknn import DkNN, extract_features
from snnl.experiments.common import finish_record, models_out, start_run, tsne
from snnl.experiments.ood.base import GeometryConfig, load, plot_record, table_record, trained_model
from snnl.experiments.common.rows import fmt_ci, judged, per_dataset
from snnl.stats import diff_aurocs

# The paper's claim (Section 5.3, App. G: t-SNE pictures, no numbers)
PAPER = {"Figs. 12, 21": "the entangled model separates OOD data"}


def ood_scores(model: nn.Module, data: Dataset, x_in: torch.Tensor, x_out: torch.Tensor,
               x_cal: torch.Tensor, y_cal: torch.Tensor, k: int = 75, n_fit: int = 10000, seed: int = 0) -> dict:
    """DkNN credibility and softmax maximum of in- and out-of-distribution inputs, and their AUROCs
    (positive class: in-distribution). The DkNN indexes every layer of ``n_fit`` training points
    and is calibrated on (x_cal, y_cal), held out from training and evaluation."""
    g = torch.Generator().manual_seed(seed)
    fit = torch.randperm(len(data.x_train), generator=g)[:n_fit]
    dknn = DkNN(k=min(k, len(fit))).fit(extract_features(model, data.x_train[fit]), data.y_train[fit])
    dknn.calibrate(extract_features(model, x_cal), y_cal)
    feats = [extract_features(model, x) for x in (x_in, x_out)]
    cred = [dknn.predict(f).credibility for f in feats]
    soft = [F.softmax(torch.from_numpy(f[-1]), 1).max(1).values.numpy() for f in feats]
    is_in = np.r_[np.ones(len(x_in)), np.zeros(len(x_out))]
    return {"credibility_in": cred[0], "credibility_out": cred[1], "softmax_in": soft[0], "softmax_out": soft[1],
            "logits_in": feats[0][-1], "logits_out": feats[1][-1],
            "auroc_credibility": float(roc_auc_score(is_in, np.r_[cred[0], cred[1]])),
            "auroc_softmax": float(roc_auc_score(is_in, np.r_[soft[0], soft[1]]))}


def run_ood(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Figs. 12, 21: baseline and entangled models (seed ``cfg.seeds[0]``) on in-distribution and
    OOD test data. Returns ``{"models": {"baseline"|"entangled": {... ood_scores ..., embedding,
    is_ood, label}}, "record"}``; ``label`` is the in-distribution class, -1 for OOD points."""
    run = start_run(cfg, "ood", f"{cfg.dataset}+{cfg.ood_dataset}")
    data = load(cfg, cfg.dataset)
    ood = load(cfg, cfg.ood_dataset, like=data)
    n_in = cfg.n_calibration + cfg.n_eval
    if n_in > len(data.x_test):
        raise ValueError(f"n_calibration + n_eval = {n_in} > {len(data.x_test)} {data.name} test points")
    g = torch.Generator().manual_seed(cfg.seed)
    perm, perm_out = torch.randperm(len(data.x_test), generator=g), torch.randperm(len(ood.x_test), generator=g)
    cal, ev = perm[:cfg.n_calibration], perm[cfg.n_calibration:n_in]
    x_out = ood.x_test[perm_out[:cfg.n_eval]]
    out = {}
    for name, a in (("baseline", 0.0), ("entangled", cfg.alpha)):
        model = trained_model(cfg, data, a, None, cache, models_out(out_dir))
        r = ood_scores(model, data, data.x_test[ev], x_out, data.x_test[cal], data.y_test[cal],
                       cfg.dknn_k, cfg.dknn_train, cfg.seed)
        n = min(cfg.n_points, cfg.n_eval, len(x_out))
        r["embedding"] = tsne(np.concatenate([r["logits_in"][:n], r["logits_out"][:n]]), cfg.seed, cfg.perplexity)
        r["is_ood"] = np.repeat([0, 1], n)
        r["label"] = np.r_[data.y_test[ev][:n].numpy(), -np.ones(n, dtype=np.int64)]
        r["accuracy_in"] = float((r["logits_in"].argmax(1) == data.y_test[ev].numpy()).mean())
        for key in ("credibility", "softmax"):
            r[f"mean_{key}_in"], r[f"mean_{key}_out"] = float(r[f"{key}_in"].mean()), float(r[f"{key}_out"].mean())
        out[name] = r
    return {"models": out, "record": finish_record(run, out, ("embedding", "is_ood", "label"), out_dir)}


# ---- tables and figures, of a run's record or a committed one -------------------------------------
TABLE_KEYS = ("auroc_credibility", "auroc_softmax", "mean_credibility_in", "mean_credibility_out", "accuracy_in")


def table_ood(record: dict) -> str:
    """Figs. 12, 21's numbers: a Markdown table, one row per model of ``record`` (this run's, or a committed one)."""
    return table_record(record, "model", TABLE_KEYS)


def plot_ood(record: dict, axes=None):
    """Figs. 12, 21, from ``record``'s history: one t-SNE panel per model. Returns the figure."""
    return plot_record("ood", record, (9, 4), axes)


# ---- the reproduction report's rows -------------------------------------------------------------
def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of this item, from the paper-profile records by experiment."""
    recs = records.get("ood", [])

    def judge(rec):
        m, c = rec["metrics"], rec["config"]
        e, b = m["entangled"], m["baseline"]
        n = c.get("n_eval", 2000)
        d, ci = diff_aurocs(e["auroc_credibility"], b["auroc_credibility"], n, n)
        return (f"AUROC of credibility, entangled {e['auroc_credibility']:.3f} vs baseline {b['auroc_credibility']:.3f} "
                f"({d:+.3f}, {fmt_ci(ci)}); softmax {e['auroc_softmax']:.3f} vs {b['auroc_softmax']:.3f}",
                judged(ci), f"{n} in- and {n} out-of-distribution points; one model pair, the Table 1 models (the "
                "paper's CNN recipe). The OOD benchmark (Beyond the paper) measures the same pair of datasets "
                "with other models (the authors' released recipe, four seeds): different models, so the two "
                "need not agree; its row there gives its difference")
    return per_dataset("Figs. 12, 21", "Figs. 12, 21: OOD inputs set apart", PAPER["Figs. 12, 21"],
                       "ood", recs, ["svhn+cifar10", "mnist+notmnist"], lambda r: r["dataset"], judge,
                       "AUROC of DkNN credibility (in vs out), entangled - baseline: 95% CI (Hanley-McNeil) above 0")
