"""Fig. 7 (paper Section 4): test accuracy against alpha over a hyper-parameter search (64 ResNet
runs on CIFAR-10): large alpha (maximising entanglement) is best. :func:`figure7` runs a grid of
alphas, negative and positive, with the Table 1 recipe (:mod:`snnl.experiments.regularization.table1`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from snnl.data import Dataset
from snnl.experiments.common import find_record, profile_values, train_recorded
from snnl.experiments.common.rows import INCONCLUSIVE, fmt_ci, judged, report_item
from snnl.stats import diff_proportions
from snnl.experiments.regularization.table1 import load_cached, table1_config
from snnl.train import TrainingDiverged

PAPER = {"Fig. 7": "large alpha (maximising entanglement) is best"}
N_TEST = {"fashion-mnist": 10_000, "mnist": 10_000, "digits": 500, "cifar10": 10_000}  # test images per dataset


# Fig. 7, per profile: the grid of alphas, the data (the paper profile: the CNN on Fashion-MNIST,
# standing in for the CIFAR-10 ResNet search)
PROFILES_FIG7 = {
    "small": dict(alphas=(-10.0, -1.0, 0.0, 1.0, 10.0, 100.0), dataset="digits", substitute_for=None),
    "paper": dict(alphas=(-30.0, -10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0, 30.0, 100.0), dataset="fashion-mnist",
                  substitute_for="the CIFAR-10 ResNet search (Fig. 7)"),
}
FIG7_ALPHAS = {p: v["alphas"] for p, v in PROFILES_FIG7.items()}


# ---- runs ----------------------------------------------------------------------------------------
def figure7(profile: str = "small", alphas=None, runs: int = 1, seed0: int = 0, *,
            dataset: str | None = None, device: str = "auto", data: Dataset | None = None,
            out_dir=None, reuse: bool = False, progress: bool = True, **overrides) -> dict:
    """Test accuracy for each alpha of a grid (Fig. 7), ``runs`` seeds each.

    The paper's search tuned alpha (with the learning rate and initial temperature) over 64
    ResNet runs on CIFAR-10; here a fixed grid of alphas with the Table 1 recipe of ``profile``
    (the CNN on ``dataset``: digits at the small profile, Fashion-MNIST at the paper profile,
    labelled as standing in for the CIFAR-10 ResNet search). A run whose loss diverges is kept
    with accuracy None. Returns ``{"alpha": [...], "test_accuracy": [...], "seed": [...],
    "diverged": [...], "dataset", "substitute_for", "records"}``.
    """
    p = profile_values(PROFILES_FIG7, profile)
    alphas = p["alphas"] if alphas is None else alphas
    dataset = dataset or p["dataset"]
    out = {"alpha": [], "test_accuracy": [], "seed": [], "diverged": [], "records": [], "dataset": dataset,
           "substitute_for": p["substitute_for"]}
    cache = {}
    for alpha in alphas:
        for seed in range(seed0, seed0 + runs):
            cfg = table1_config(dataset, alpha, profile, seed, device, **overrides)
            cfg.experiment = "fig7"
            extra = {"substitute_for": out["substitute_for"]}
            rec = find_record(out_dir, "fig7", {**asdict(cfg), **extra}) if reuse else None
            try:
                if rec is None:
                    rec = train_recorded(cfg, data if data is not None else load_cached(cfg, cache), out_dir, extra,
                                         progress=progress).record
                acc, diverged = rec["metrics"]["test_accuracy"], False
                out["records"].append(rec)
            except TrainingDiverged:
                acc, diverged = None, True
            out["alpha"].append(float(alpha)); out["seed"].append(seed)
            out["test_accuracy"].append(acc); out["diverged"].append(diverged)
    return out


# ---- figure --------------------------------------------------------------------------------------
def plot_figure7(fig7: dict, ax=None):
    """Scatter of test accuracy against alpha (symmetric-log axis), as in Fig. 7; the colour says
    what alpha does to the hidden layers (the legend: maximises, none, minimises entanglement)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    a = np.array(fig7["alpha"])
    acc = np.array([np.nan if v is None else 100 * v for v in fig7["test_accuracy"]])
    ok = ~np.isnan(acc)
    for keep, color, what in ((a > 0, "tab:red", "alpha > 0: maximises entanglement"),
                              (a == 0, "tab:blue", "alpha = 0: cross-entropy only"),
                              (a < 0, "tab:green", "alpha < 0: minimises entanglement")):
        if (keep & ok).any():
            ax.scatter(a[keep & ok], acc[keep & ok], c=color, s=25, zorder=3, label=what)
    if (~ok).any():
        ax.scatter(a[~ok], np.full((~ok).sum(), np.nanmin(acc) if ok.any() else 0), marker="x", c="k",
                   label="diverged (no accuracy)")
    ax.legend(fontsize=8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="0.8", lw=1, zorder=0)
    ax.set(xlabel="alpha (> 0: maximise entanglement)", ylabel="test accuracy (%)",
           title=f"Fig. 7: accuracy against alpha ({fig7['dataset']})")
    return ax


# ---- the reproduction report's rows ---------------------------------------------------------------
def fig7_items(recs):
    name, paper = "Fig. 7: test accuracy against alpha", PAPER["Fig. 7"]
    crit = ("the best alpha > 0 (ours: maximising entanglement, the paper's alpha < 0) beats the best alpha <= 0: "
            "95% CI of the difference of their test accuracies above 0 (Newcombe, over the test images of one run "
            "each: seed-to-seed spread not included)")
    if not recs:
        return [report_item("Fig. 7", name + " (cifar10)", paper, "fig7", criterion=crit)]
    acc: dict[float, list[float]] = {}
    for r in recs:
        acc.setdefault(float(r["config"]["alpha"]), []).append(100 * r["metrics"]["test_accuracy"])
    mean = {a: sum(v) / len(v) for a, v in acc.items()}
    flat = [x for v in acc.values() for x in v]
    pos, rest = [a for a in mean if a > 0], [a for a in mean if a <= 0]
    ours = ", ".join(f"{a:g}: {mean[a]:.2f}" for a in sorted(mean))
    status, d_text = INCONCLUSIVE, "needs alphas on both sides of 0"
    if pos and rest:
        bp, br = max(pos, key=mean.get), max(rest, key=mean.get)
        n = N_TEST.get(recs[0]["dataset"], 10_000)
        d, ci = diff_proportions(mean[bp] / 100, n, mean[br] / 100, n)
        status = judged(ci)
        d_text = (f"best alpha > 0: {bp:g} ({mean[bp]:.2f}%) vs best alpha <= 0: {br:g} ({mean[br]:.2f}%), "
                  f"{100 * d:+.2f} points ({fmt_ci(tuple(100 * x for x in ci), '.2f')})")
    return [report_item("Fig. 7", name, paper, "fig7", recs, ours=d_text, status=status, criterion=crit,
                        spread=f"{min(flat):.2f}–{max(flat):.2f}%",
                        reduced=f"a grid of {len(acc)} alphas, one run each, not the paper's 64-run search",
                        note=f"mean test accuracy (%) per alpha: {ours}")]


def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Fig. 7, from the paper-profile records by experiment."""
    return fig7_items(records.get("fig7", []))
