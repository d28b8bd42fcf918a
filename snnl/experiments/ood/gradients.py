"""Figs. 10, 11 (paper Section 5.2): the gradients a targeted FGSM attack follows, on two models.

t-SNE of the gradients' sign (as in the authors' code) of two models stacked: two cross-entropy
models give class clusters aligned across the models; two entangled models do not. Numbers added
here: the mean cosine between the two models' gradients of the same input, and kNN accuracies
in the joint embedding. Configuration, models and the t-SNE / kNN helpers:
:mod:`snnl.experiments.ood.base`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from snnl.experiments.common import finish_record, knn_accuracy, models_out, start_run, tsne
from snnl.experiments.ood.base import GeometryConfig, load, plot_record, table_record, trained_model
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE, fmt_ci, judged, per_dataset
from snnl.stats import diff_proportions, proportion_ci
from snnl.models import logits_of

# The paper's claim (Section 5.2: t-SNE pictures, no numbers)
PAPER = {"Figs. 10, 11": "aligned for two CE models, not with entangled ones"}
# "aligned" (the report's test): a kNN fitted on one model's gradients labels most of the other model's
# correctly; chance is about 1/9, so a number near chance cannot pass
ALIGNED = 0.5


def adversarial_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The gradient a targeted FGSM step follows, ``-grad_x CE(f(x), target)`` (N, ...), in eval
    mode; ``sign()`` of it is FGSM's step before clipping to [0, 1]."""
    was = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(logits_of(model(x)), target, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was)
    return -g


def gradient_alignment(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       target: torch.Tensor, k: int = 10, seed: int = 0, perplexity: float = 30.0) -> dict:
    """Figs. 10, 11 for one pair: t-SNE of both models' sign gradients stacked, and numbers.

    ``y``: the class each point is grouped by (the input's label for a fixed target, the target
    for random targets). Returns embedding (2N, 2), model (2N,) 0/1, label (2N,); cosine_sign and
    cosine_raw (mean over inputs of the cosine between the two models' gradients); knn_accuracy
    (leave-one-out, label, joint embedding); cross_model_knn_accuracy (kNN fitted on one model's
    points predicts the other's labels, both ways averaged: high when class clusters are aligned
    across models); model_mixing (fraction of a point's k neighbours from the other model, 0.5 = mixed).
    """
    ga, gb = (adversarial_gradients(m, x, target).flatten(1) for m in (model_a, model_b))
    cos_raw = F.cosine_similarity(ga, gb, dim=1, eps=1e-30).mean().item()
    sa, sb = ga.sign(), gb.sign()
    cos_sign = F.cosine_similarity(sa, sb, dim=1, eps=1e-30).mean().item()
    emb = tsne(torch.cat([sa, sb]).numpy(), seed, perplexity)
    n, lab = len(x), np.concatenate([y.numpy(), y.numpy()])
    who = np.repeat([0, 1], n)
    cross = [KNeighborsClassifier(k).fit(emb[who == i], lab[who == i]).score(emb[who != i], lab[who != i])
             for i in (0, 1)]
    idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb, return_distance=False)[:, 1:]
    mixing = float((who[idx] != who[:, None]).mean())
    return {"embedding": emb, "model": who, "label": lab, "cosine_sign": cos_sign, "cosine_raw": cos_raw,
            "knn_accuracy": knn_accuracy(emb, lab, k), "cross_model_knn_accuracy": float(np.mean(cross)),
            "model_mixing": mixing}


def run_adversarial_gradients(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Figs. 10, 11: gradient alignment of two baseline models, two entangled models and one of
    each (seeds ``cfg.seeds``). Returns ``{"pairs": {name: gradient_alignment(...)}, "record"}``."""
    run = start_run(cfg, "adversarial_gradients", cfg.dataset)
    data = load(cfg, cfg.dataset)
    m = {(a, s): trained_model(cfg, data, a, s, cache, models_out(out_dir)) for a in (0.0, cfg.alpha) for s in cfg.seeds}
    g = torch.Generator().manual_seed(cfg.seed)
    x, y = data.x_test, data.y_test
    if cfg.target == "random":
        idx = torch.randperm(len(x), generator=g)[:cfg.n_points]
        target = (y[idx] + torch.randint(1, data.num_classes, (len(idx),), generator=g)) % data.num_classes
        label = target
    else:
        keep = torch.nonzero(y != int(cfg.target)).squeeze(1)
        idx = keep[torch.randperm(len(keep), generator=g)[:cfg.n_points]]
        target, label = torch.full((len(idx),), int(cfg.target)), y[idx]
    s0, s1 = cfg.seeds
    pairs = {"baseline": (m[0.0, s0], m[0.0, s1]), "entangled": (m[cfg.alpha, s0], m[cfg.alpha, s1]),
             "mixed": (m[0.0, s0], m[cfg.alpha, s0])}
    res = {k: gradient_alignment(a, b, x[idx], label, target, cfg.knn_k, cfg.seed, cfg.perplexity)
           for k, (a, b) in pairs.items()}
    return {"pairs": res, "record": finish_record(run, res, ("embedding", "model", "label"), out_dir)}


# ---- tables and figures, of a run's record or a committed one -------------------------------------
TABLE_KEYS = ("cosine_raw", "cosine_sign", "cross_model_knn_accuracy", "knn_accuracy", "model_mixing")


def table_gradients(record: dict) -> str:
    """Figs. 10, 11's numbers: a Markdown table, one row per pair of ``record`` (this run's, or a committed one)."""
    return table_record(record, "pair", TABLE_KEYS)


def plot_gradients(record: dict, axes=None):
    """Figs. 10, 11, from ``record``'s history: one t-SNE panel per pair. Returns the figure."""
    return plot_record("gradients", record, (13, 4), axes)


# ---- the reproduction report's rows -------------------------------------------------------------
def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of this item, from the paper-profile records by experiment."""
    recs = records.get("adversarial_gradients", [])

    def judge(rec):
        m = {k: v["cross_model_knn_accuracy"] for k, v in rec["metrics"].items()}
        cos = {k: v["cosine_sign"] for k, v in rec["metrics"].items()}
        n = len((rec.get("history") or {}).get("baseline", {}).get("label") or []) or 2 * rec["config"]["n_points"]
        ce = proportion_ci(round(m["baseline"] * n), n)
        d, ci = diff_proportions(m["baseline"], n, m["entangled"], n)
        aligned = HOLDS if ce[0] >= ALIGNED else FAILS if ce[1] < ALIGNED else INCONCLUSIVE
        status = aligned if aligned != HOLDS else judged(ci)
        return (f"cross-model kNN accuracy: CE pair {m['baseline']:.3f} ({fmt_ci(ce)}), entangled pair "
                f"{m['entangled']:.3f}, mixed {m['mixed']:.3f}; CE - entangled {d:+.3f} ({fmt_ci(ci)})", status,
                f"{n} predictions; chance about 1/9 (the 9 classes other than the target); sign-gradient cosine "
                + ", ".join(f"{k} {v:.3f}" for k, v in cos.items()))
    return per_dataset("Figs. 10, 11", "Figs. 10, 11: targeted-FGSM gradients aligned",
                       PAPER["Figs. 10, 11"], "adversarial_gradients", recs,
                       ["mnist"], lambda r: r["dataset"], judge,
                       f"aligned: the CE pair's cross-model kNN accuracy at least {ALIGNED} (most points find their "
                       "class among the other model's gradients; Wilson 95% CI), and above the entangled pair's "
                       "(Newcombe 95% CI above 0)")
