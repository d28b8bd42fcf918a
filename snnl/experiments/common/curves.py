"""Training histories averaged over runs, and their plot (per-layer SNNL, temperature, scale, CE).

A training record's ``history`` (see :func:`snnl.train.train`) holds, at logged steps, every
regularised layer's SNNL of the training batch, its temperature and its activation scale
(median pairwise distance / T), and at evaluations the train and test cross-entropy and accuracy.
"""

from __future__ import annotations

import warnings

import numpy as np

LAYERED = ("snnl", "temperature", "scale")
EVALUATED = ("train_ce", "test_ce", "train_accuracy", "test_accuracy")


def _mean(rows) -> list[float]:
    """Mean over runs, step by step; a value a record stores as null (NaN, infinite) is left out."""
    a = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step where every run is NaN stays NaN
        return np.nanmean(a, axis=0).tolist()


def mean_history(records: list[dict]) -> dict:
    """The mean over ``records`` of their histories, cut to the shortest; ``{}`` without any."""
    hs = [r["history"] for r in records if r.get("history")]
    if not hs:
        return {}
    n = min(len(h["step"]) for h in hs)
    m = min(len(h["eval_step"]) for h in hs)
    out = {"step": hs[0]["step"][:n], "eval_step": hs[0]["eval_step"][:m], "runs": len(hs)}
    for key in LAYERED:
        layers = [k for k in hs[0].get(key, {}) if all(len(h.get(key, {}).get(k, [])) >= n for h in hs)]
        out[key] = {k: _mean([h[key][k][:n] for h in hs]) for k in layers}
    for key in EVALUATED:
        out[key] = _mean([h[key][:m] for h in hs])
    return out


def plot_training(groups: dict[str, list[dict]], title: str = ""):
    """Four panels over training steps, two by two (legible at a page's width): per-layer SNNL (the
    grey line: log 10, about the loss of points whose neighbours are drawn at random from 10
    balanced classes), temperature, activation scale (median squared distance / T), train (black)
    and test (red) CE. ``groups``: label -> records; the first label is drawn solid, the others
    dashed and dotted; the colour of a layer is the same in the first three panels."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, grid = plt.subplots(2, 2, figsize=(9, 6.8))
    axes = grid.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    counts, styles, layers = [], [], {}
    for (label, recs), ls in zip(groups.items(), ("-", "--", ":", "-.")):
        cur = mean_history(recs)
        counts.append(f"{label} {cur.get('runs', 0)}")
        if not cur:
            continue
        styles.append(Line2D([], [], color="0.3", ls=ls, label=label))
        for i, layer in enumerate(cur["snnl"]):
            col = layers.setdefault(layer, colors[len(layers) % len(colors)])
            axes[0].plot(cur["step"], cur["snnl"][layer], ls, color=col)
            axes[1].plot(cur["step"], cur["temperature"][layer], ls, color=col)
            if cur.get("scale", {}).get(layer):
                axes[2].plot(cur["step"], cur["scale"][layer], ls, color=col)
        axes[3].plot(cur["eval_step"], cur["train_ce"], ls, color="k")
        axes[3].plot(cur["eval_step"], cur["test_ce"], ls, color="tab:red")
    axes[0].axhline(np.log(10), color="0.6", lw=0.8)
    axes[0].set(title="training SNNL per layer", ylabel="SNNL")
    axes[1].set(title="temperature T", yscale="log")
    axes[2].set(title="median squared distance / T", xlabel="step", yscale="log")
    axes[3].set(title="cross-entropy", xlabel="step", yscale="log")
    for ax in axes:
        ax.title.set_fontsize(12)
        ax.tick_params(labelsize=10)
    axes[0].legend(handles=[Line2D([], [], color=c, label=n) for n, c in layers.items()] + styles, fontsize=9,
                   ncol=2)
    axes[3].legend(handles=[Line2D([], [], color="k", label="train"), Line2D([], [], color="tab:red", label="test"),
                            *styles], fontsize=9)
    fig.suptitle(f"{title} (runs: {', '.join(counts)})", fontsize=11)
    fig.tight_layout()
    return fig
