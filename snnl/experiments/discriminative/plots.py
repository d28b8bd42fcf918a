"""The figures of Figs. 15, 3 and 16: entanglement of every layer over training, from a
:class:`~snnl.experiments.discriminative.representations.LayerEntanglement` (a run's, or one rebuilt
from a committed record)."""

from __future__ import annotations

def plot_over_training(r, layers=None, which: str = "entanglement", ax=None, title=None):
    """One line per layer: entanglement on the fixed batch (``which="entanglement"``) or the
    training-batch SNNL at the learned temperature (``which="batch"``) against the step."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    if which == "batch":
        x, curves, ylabel = r.steps, r.batch_snnl, "SNNL of the training batch"
    elif which == "entanglement":
        x, curves, ylabel = r.measure_steps, r.entanglement, "entanglement (min over T)"
    else:
        raise ValueError(f"which must be 'entanglement' or 'batch', got {which!r}")
    layers = list(curves) if layers is None else list(layers)
    missing = [n for n in layers if n not in curves]
    if missing:
        raise ValueError(f"no curve for layer(s) {missing}; available: {list(curves)}")
    colors = plt.cm.viridis([i / max(len(layers) - 1, 1) for i in range(len(layers))])
    for n, c in zip(layers, colors):
        ax.plot(x, curves[n], marker="o" if which == "entanglement" else None, ms=3, color=c, label=n)
    ax.set(xlabel="training step", ylabel=ylabel,
           title=title or f"{r.model} on {r.data_label} ({r.distance})")
    ax.legend(fontsize=8)
    return ax


def plot_figure15(r):
    """Fig. 15: per-layer SNNL of the training batches, and the entanglement on a fixed batch."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_over_training(r, which="batch", ax=axes[0], title=f"Fig. 15: training batches ({r.data_label})")
    plot_over_training(r, ax=axes[1], title="entanglement of a fixed test batch")
    fig.tight_layout()
    return fig


def plot_figure3_16(r):
    """Fig. 3 (layers inside the last residual block) and Fig. 16 (per block), entanglement."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_over_training(r, r.last_block, ax=axes[0], title=f"Fig. 3: inside the last block ({r.data_label})")
    plot_over_training(r, r.blocks, ax=axes[1], title=f"Fig. 16: per residual block ({r.data_label})")
    fig.tight_layout()
    return fig
