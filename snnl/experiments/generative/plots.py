"""Figures and tables of the GAN records (paper Section 3.2, Appendices D and I), and how the
records keep images and points.

Sample grids are kept in records as small base64 PNGs (:func:`encode_grid` / :func:`decode_grid`),
t-SNE coordinates as base64 float16 (:func:`encode_points` / :func:`decode_points`), so that every
figure is redrawn from a record: this run's or a committed paper-profile one, with the same call
(:func:`plot_entanglement`, :func:`plot_tsne`, :func:`plot_snapshots`, :func:`plot_snnl_generator`,
:func:`plot_samples`, :func:`plot_class_histograms`; :func:`table_generators` and :func:`describe`
put their numbers in words). The records are written by :mod:`snnl.experiments.generative.gans`.
"""

from __future__ import annotations

import base64
import io
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from snnl.experiments.common.rows import fmt_num

COVERAGE_THRESHOLD = 0.01  # a class is covered when at least 1% of the samples are classified as it
EXPERIMENTS = ("gan_entanglement", "snnl_gan", "snnl_gan_learned")


# ---- records: grids as PNG, t-SNE coordinates ----------------------------------------------------
def encode_grid(images: torch.Tensor, nrow: int = 8) -> str:
    """A grid of (N, C, H, W) images in [0, 1] as a base64 PNG string (8-bit)."""
    grid = make_grid(images.detach().cpu().float().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 or images.shape[1] == 1 else arr).save(buf, "PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_grid(text: str) -> np.ndarray:
    """The image array (H, W) or (H, W, 3), uint8, of :func:`encode_grid`'s string."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def encode_points(points: np.ndarray) -> str:
    """(N, 2) coordinates as a base64 string of float16 values (compact records)."""
    return base64.b64encode(np.asarray(points, dtype="<f2").tobytes()).decode("ascii")


def decode_points(text: str) -> np.ndarray:
    """The (N, 2) float32 array of :func:`encode_points`'s string."""
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32).reshape(-1, 2)


# ---- figures and tables, redrawn from records ------------------------------------------------------
def label(record: dict) -> str:
    """``"GAN (dcgan)"``, ``"SNNL generator (dcgan)"``, ... for legends."""
    name = {"gan_entanglement": "GAN", "snnl_gan": "SNNL generator", "snnl_gan_learned": "learned-space SNNL-GAN"}
    c = record["config"]
    form = f", {c['g_loss']}" if record["experiment"] == "snnl_gan" and c.get("g_loss") == "maximize" else ""
    return f"{name.get(record['experiment'], record['experiment'])} ({c['variant']}{form})"


def plot_entanglement(records: list[dict], title: str = ""):
    """Figs. 5/17: real/synthetic entanglement (Eq. 2) and 1-NN accuracy against the step."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for r in records:
        h = r["history"]
        a.plot(h["measure_step"], h["entanglement"], marker=".", label=label(r))
        b.plot(h["measure_step"], h["nn_accuracy"], marker=".", label=label(r))
    a.set(xlabel="training step", ylabel="entanglement (min over T)", title=title or "real vs synthetic, pixels")
    b.set(xlabel="training step", ylabel="1-NN two-sample accuracy", ylim=(0.45, 1.02), title="1 = separable, 0.5 = mixed")
    a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tsne(record: dict):
    """Fig. 4: t-SNE of real (grey) and synthetic (red) images at each snapshot."""
    snaps = record["history"]["snapshots"]
    ms = record["history"]["measure_step"]
    fig, axes = plt.subplots(1, len(snaps), figsize=(3 * len(snaps), 3.2), squeeze=False)
    for ax, s in zip(axes[0], snaps):
        r, f = decode_points(s["tsne_real"]), decode_points(s["tsne_fake"])
        ax.scatter(r[:, 0], r[:, 1], s=5, c="0.5", label="real")
        ax.scatter(f[:, 0], f[:, 1], s=5, c="tab:red", label="synthetic")
        e = record["history"]["entanglement"][ms.index(s["step"])] if s["step"] in ms else float("nan")
        ax.set(xticks=[], yticks=[], title=f"step {s['step']}: entanglement {e:.3f}")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(label(record))
    fig.tight_layout()
    return fig


def plot_grids(grids: list[tuple[str, str]], size: float = 3.2):
    """A row of encoded grids ``(title, base64 PNG)``; a title longer than its panel is wrapped onto
    more lines (side by side, long titles would run into each other)."""
    lines = [textwrap.fill(title, width=max(12, int(size * 9))) for title, _ in grids]
    extra = 0.22 * (max(t.count("\n") for t in lines) if lines else 0)
    fig, axes = plt.subplots(1, len(grids), figsize=(size * len(grids), size + 0.3 + extra), squeeze=False)
    for ax, title, (_, png) in zip(axes[0], lines, grids):
        ax.imshow(decode_grid(png), cmap="gray", vmin=0, vmax=255)
        ax.set(xticks=[], yticks=[])
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_class_histograms(records: list[dict]):
    """Share of generated samples per predicted class, one bar group per record."""
    fig, ax = plt.subplots(figsize=(8, 3))
    recs = [r for r in records if "class_histogram" in r["metrics"]]
    w = 0.8 / max(1, len(recs))
    for i, r in enumerate(recs):
        m = r["metrics"]
        ax.bar(np.arange(10) + i * w, m["class_histogram"], w, label=f"{label(r)}: {m['class_coverage']}/10")
    ax.axhline(COVERAGE_THRESHOLD, color="k", lw=0.8, ls="--")
    ax.set(xticks=np.arange(10) + 0.4 - w / 2, xticklabels=range(10), xlabel="predicted class",
           ylabel="share of samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_snapshots(record: dict, size: float = 2.4):
    """The sample grids of ``record``'s snapshots over training (Figs. 4, 23)."""
    return plot_grids([(f"step {s['step']}", s["grid"]) for s in record["history"]["snapshots"]], size=size)


def plot_snnl_generator(record: dict, size: float = 4):
    """Fig. 6 from an ``snnl_gan`` record: samples of fixed noise, and one noise vector with two of
    its dimensions swept."""
    g = record["history"]["grids"]
    return plot_grids([("samples", g["samples"]), ("2 noise dimensions swept", g["sweep"])], size=size)


def plot_samples(records: list[dict], size: float = 4):
    """The final samples of each record, titled with its class coverage."""
    return plot_grids([(f"{label(record)}, {record['dataset']}: {record['metrics'].get('class_coverage')} of 10 "
                        "classes", record["history"]["grids"]["samples"]) for record in records], size=size)


def describe(record: dict) -> str:
    """One line on a generator's record: entanglement and 1-NN accuracy at the start and the end,
    and, where measured, the class coverage of its samples."""
    m = record["metrics"]
    line = (f"{label(record)}: entanglement {m['entanglement_start']:.3f} -> {m['entanglement_end']:.3f} "
            f"(max {m['entanglement_max']:.3f}, Spearman with step {m['entanglement_spearman']:+.2f}); "
            f"1-NN accuracy {m['nn_accuracy_start']:.3f} -> {m['nn_accuracy_end']:.3f}")
    if "learned_snnl_end" in m:
        line += f"; loss in the learned space at the end {m['learned_snnl_end']:.3f}"
    if "class_coverage" in m:
        line += (f"; class coverage {m['class_coverage']}/10 (classes with >= {m['coverage_threshold']:.0%} of "
                 f"{m['classified_samples']} samples; classifier test accuracy "
                 f"{fmt_num(m['classifier_test_accuracy'])}, mean confidence on samples {m['mean_confidence']:.2f}"
                 + (f"; real images: {m['real_class_coverage']}/10" if "real_class_coverage" in m else "") + ")")
    return line


def table_generators(records: list[dict]) -> str:
    """A Markdown table, one row per generator record: steps, entanglement (start, end, max, Spearman
    with the step), 1-NN accuracy at the end, class coverage, wall time and device."""
    lines = ["| generator | steps | entanglement start | end | max | Spearman | 1-NN accuracy end | coverage "
             "| minutes | device |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        m = r["metrics"]
        lines.append(f"| {label(r)} | {r['config']['steps']} | {m['entanglement_start']:.3f} | "
                     f"{m['entanglement_end']:.3f} | {m['entanglement_max']:.3f} | {m['entanglement_spearman']:+.2f} | "
                     f"{m['nn_accuracy_end']:.3f} | {m.get('class_coverage', '–')} | {r['wall_seconds'] / 60:.0f} | "
                     f"{r['device']} |")
    return "\n".join(lines)
