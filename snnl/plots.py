"""Figures of the synthetic experiments (paper Section 2, Apps. A and B): Figs. 1, 13, 2 and the
loss as a function of the temperature (Eq. 2). Each function takes the dict returned by the
matching :mod:`snnl.experiments.loss.synthetic` function and returns a matplotlib figure
(matplotlib: the extra ``snnl[experiments]``)."""

from __future__ import annotations

import numpy as np

from snnl.extras import require

plt = require("matplotlib.pyplot", "experiments", "snnl.plots")

CMAP = "tab10"


def plot_points(ax, points: np.ndarray, labels: np.ndarray, title: str = "", markers=None, robust: bool = True):
    """Scatter 2-D points coloured by label (marker by ``markers`` group if given). With
    ``robust``, the view holds 95% of the points around the median; the rest are counted."""
    points, labels = np.asarray(points), np.asarray(labels)
    groups = np.zeros(len(points), int) if markers is None else np.asarray(markers)
    for g, marker in zip(np.unique(groups), "o^sDv"):
        sel = groups == g
        ax.scatter(points[sel, 0], points[sel, 1], c=labels[sel], cmap=CMAP, vmin=0, vmax=9, s=10,
                   marker=marker, linewidths=0)
    if robust:
        centre = np.median(points, 0)
        r = np.linalg.norm(points - centre, axis=1)
        half = 1.15 * np.quantile(r, 0.95)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        outside = int((np.abs(points - centre) > half).any(1).sum())
        if outside:
            title += f"\n({outside} point{'s' if outside > 1 else ''} outside the view)"
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def plot_figure1(result: dict):
    """Fig. 1: start, end of the minimisation, and the loss along the way."""
    m = result["metrics"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    plot_points(axes[0], result["initial"], result["labels"],
                f"start: loss {m['initial']['loss']:.3f}, 1-NN purity {m['initial']['purity']:.2f}")
    plot_points(axes[1], result["final"], result["labels"],
                f"minimised: loss {m['final']['loss']:.3f}, 1-NN purity {m['final']['purity']:.2f}")
    axes[2].plot(result["loss"])
    axes[2].set(xlabel="gradient step", ylabel="soft nearest neighbor loss", yscale="log",
                title=f"T = {result['config']['temperature']:g}")
    fig.tight_layout()
    return fig


def plot_figure13(result: dict):
    """Fig. 13: two modes per class (marker = mode), before and after minimising."""
    m = result["metrics"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, key, name in ((axes[0], "initial", "start"), (axes[1], "final", "minimised")):
        plot_points(ax, result[key], result["labels"], f"{name}: loss {m[key]['loss']:.3f}, "
                    f"modes split (ARI) {m[key]['mode_ari']:.2f}", markers=result["modes"])
    fig.tight_layout()
    return fig


def plot_figure2(result: dict):
    """Fig. 2: rows triplet / soft nearest neighbor; columns minimised, start, maximised."""
    m = result["metrics"]
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.5))
    for row, (loss, name) in enumerate((("triplet", "triplet"), ("snnl", "soft nearest neighbor"))):
        for col, direction in enumerate(("min", None, "max")):
            ax = axes[row, col]
            if direction is None:
                plot_points(ax, result["initial"], result["labels"], f"start (radial CV {m['start']['radial_cv']:.2f})")
                continue
            key = f"{loss}_{direction}"
            plot_points(ax, result["points"][(loss, direction)], result["labels"],
                        f"{name} {direction}imised\nradial CV {m[key]['radial_cv']:.2f}, "
                        f"1-NN purity {m[key]['purity']:.2f}")
    fig.tight_layout()
    return fig


def plot_temperature_curve(*results: dict, names=None, ax=None):
    """Loss against T (log axis), one curve per result, the entanglement minimum marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    for k, res in enumerate(results):
        name = names[k] if names else f"data {k}"
        line, = ax.plot(res["temperature"], res["loss"], label=name)
        ax.plot([res["argmin"]], [res["entanglement"]], "o", color=line.get_color(),
                mfc="none" if res["at_boundary"] else line.get_color(), ms=8)
    plateau = max(float(np.max(res["loss"][len(res["loss"]) // 2:])) for res in results)
    ax.set_ylim(0, 1.5 * plateau)  # the loss of entangled data explodes as T -> 0: keep the plateaus visible
    ax.set(xscale="log", xlabel="temperature T", ylabel="soft nearest neighbor loss",
           title="l_sn(T); circles: entanglement min_T (open: at the edge of the range)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return ax.figure
