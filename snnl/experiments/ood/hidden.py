"""Fig. 22 (paper App. H): adversarial examples in the first hidden layer.

t-SNE of the first hidden layer's activations on real and adversarial (FGSM or BIM) test data,
for a cross-entropy and an entangled model. Number added: a kNN classifier's accuracy at telling
real from adversarial points in that layer (and in the t-SNE embedding). Configuration, models
and the t-SNE / kNN helpers: :mod:`snnl.experiments.ood.base`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from snnl.attacks import BIM, FGSM
from snnl.dknn import extract_features
from snnl.experiments.common import finish_record, knn_accuracy, models_out, start_run, tsne
from snnl.experiments.ood.base import GeometryConfig, load, plot_record, table_record, trained_model
from snnl.experiments.common.rows import fmt_ci, judged, per_dataset
from snnl.stats import diff_proportions

# The paper's claim (App. H: a t-SNE picture, no numbers)
PAPER = {"Fig. 22": "separate in the entangled model, mixed in the CE model"}


def real_vs_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack, layer: str = "conv1",
                        k: int = 10, seed: int = 0, perplexity: float = 30.0) -> dict:
    """Fig. 22 for one model: ``layer``'s activations on real and adversarial inputs, their t-SNE,
    and kNN accuracies at telling them apart, in the layer and in the t-SNE embedding (leave-one-out,
    a point's adversarial twin never among its neighbours)."""
    adv = attack(x, y)
    real_f, adv_f = (extract_features(model, z, layers=[layer, "logits"]) for z in (x, adv))
    feats = np.concatenate([real_f[0], adv_f[0]])
    is_adv = np.repeat([0, 1], len(x))
    groups = np.r_[np.arange(len(x)), np.arange(len(x))]
    emb = tsne(feats, seed, perplexity)
    acc = [float((f[1].argmax(1) == y.numpy()).mean()) for f in (real_f, adv_f)]
    return {"embedding": emb, "is_adversarial": is_adv, "knn_accuracy_layer": knn_accuracy(feats, is_adv, k, groups),
            "knn_accuracy_tsne": knn_accuracy(emb, is_adv, k, groups), "clean_accuracy": acc[0], "adversarial_accuracy": acc[1]}


def run_hidden_adversarial(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Fig. 22: first hidden layer on real vs adversarial test data (``cfg.hidden_attack``),
    baseline and entangled models. Returns ``{"models": {name: real_vs_adversarial(...)}, "record"}``."""
    run = start_run(cfg, "hidden_adversarial", cfg.hidden_dataset)
    data = load(cfg, cfg.hidden_dataset)
    idx = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_points]
    x, y = data.x_test[idx], data.y_test[idx]
    out = {}
    for name, a in (("baseline", 0.0), ("entangled", cfg.alpha)):
        model = trained_model(cfg, data, a, None, cache, models_out(out_dir))
        if cfg.hidden_attack == "fgsm":
            attack = FGSM(model, cfg.hidden_eps)
        elif cfg.hidden_attack == "bim":
            attack = BIM(model, cfg.hidden_eps, cfg.bim_alpha, cfg.bim_steps)
        else:
            raise ValueError(f"unknown attack {cfg.hidden_attack!r}; choose fgsm or bim")
        out[name] = real_vs_adversarial(model, x, y, attack, cfg.hidden_layer, cfg.knn_k, cfg.seed, cfg.perplexity)
    return {"models": out, "record": finish_record(run, out, ("embedding", "is_adversarial"), out_dir)}


# ---- tables and figures, of a run's record or a committed one -------------------------------------
TABLE_KEYS = ("knn_accuracy_layer", "knn_accuracy_tsne", "clean_accuracy", "adversarial_accuracy")


def table_hidden(record: dict) -> str:
    """Fig. 22's numbers: a Markdown table, one row per model of ``record`` (this run's, or a committed one)."""
    return table_record(record, "model", TABLE_KEYS)


def plot_hidden(record: dict, axes=None):
    """Fig. 22, from ``record``'s history: one t-SNE panel per model. Returns the figure."""
    return plot_record("hidden", record, (9, 4), axes)


# ---- the reproduction report's rows -------------------------------------------------------------
def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of this item, from the paper-profile records by experiment."""
    recs = records.get("hidden_adversarial", [])

    def judge(rec):
        e, b = rec["metrics"]["entangled"], rec["metrics"]["baseline"]
        n = 2 * rec["config"].get("n_points", len((rec.get("history") or {}).get("entangled", {}).get("is_adversarial")
                                                   or []) // 2 or 150)
        d, ci = diff_proportions(e["knn_accuracy_layer"], n, b["knn_accuracy_layer"], n)
        return (f"kNN real-vs-adversarial accuracy, entangled {e['knn_accuracy_layer']:.3f} vs baseline "
                f"{b['knn_accuracy_layer']:.3f} ({d:+.3f}, {fmt_ci(ci)})", judged(ci),
                f"{rec['config'].get('hidden_attack')} eps {rec['config'].get('hidden_eps')}, layer "
                f"{rec['config'].get('hidden_layer')}, {n} points (real and adversarial)")
    return per_dataset("Fig. 22", "Fig. 22: adversarial points apart in the first hidden layer",
                       PAPER["Fig. 22"], "hidden_adversarial", recs,
                       ["fashion-mnist"], lambda r: r["dataset"], judge,
                       "kNN accuracy at telling real from adversarial, entangled - baseline: 95% CI (Newcombe) above 0")
