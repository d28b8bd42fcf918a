"""Entanglement of representations during discriminative training (paper Section 3.1, App. C).

* Fig. 15 (App. C): a network with one convolutional and three fully connected layers
  (:class:`snnl.models.CNN1`) trained on MNIST with cross-entropy only; the soft nearest
  neighbor loss of each training batch at each hidden layer *decreases* over training.
* Figs. 3 and 16 (Section 3.1, App. C): a ResNet v2 on CIFAR-10, cross-entropy only, cosine
  distance. Fig. 16, per residual block: the lower blocks stay entangled, the last block
  disentangles. Fig. 3, the layers inside the last block: after an initial drop the inner
  layers' entanglement rises while the block's output keeps falling.

:func:`layer_entanglement_over_training` runs either experiment with :func:`snnl.train.train`
and returns two kinds of curves: the SNNL of each logged *training batch* at the learned
temperature (``train()``'s history: the paper's Fig. 15 measure) and the *entanglement*
(Eq. 2, minimum over T via :func:`snnl.entanglement`) of every hidden layer, and of the layers
inside the ResNet's last block, on one fixed batch of test images at a few points of
training. The temperature-free measure is the one to read for the cosine distance: at the
default T0 = 100 every cosine distance (at most 2) is negligible and the batch SNNL sits at its
ceiling.

CIFAR-10 cannot be downloaded everywhere. Where it is missing, Fashion-MNIST padded to 32x32
and replicated to 3 channels stands in (:data:`SUBSTITUTES`); the result, its record's config
and the plots say so (``substitute_for``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from snnl.banner import data_label
from snnl.data import Dataset
from snnl.experiments.common import (PAPER_RECIPE, RESNET_PAPER, SUBSTITUTES, ds_key, find_record,  # noqa: F401 (names of this module)
                                    finish_run, load_or_substitute, profile_values, train_recorded)
from scipy.stats import spearmanr

from snnl.experiments.discriminative.plots import (  # noqa: F401 (re-exported: one import for the chapter)
    plot_figure3_16, plot_figure15, plot_over_training)
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE, all_hold, fmt_ci, judged, per_dataset, stands_for
from snnl.losses import entanglement
from snnl.results import Run
from snnl.stats import compare, fmt_p
from snnl.train import TrainConfig, train

# The paper's claims (Section 3.1, App. C: curves, no numbers)
PAPER = {"Fig. 15": "decreases in every layer", "Fig. 16": "lower blocks stay entangled, the last disentangles",
         "Fig. 3": "inner layers re-entangle, the output does not"}
# Settings per figure and profile (any TrainConfig field can be overridden).
PROFILES_FIG15 = {
    "small": dict(dataset="digits", model="cnn1", steps=300, batch_size=128, lr=1e-3, log_every=10, eval_every=300),
    "paper": dict(dataset="mnist", model="cnn1", **PAPER_RECIPE, log_every=50, eval_every=500),
}
PROFILES_FIG3_16 = {
    "small": dict(dataset="digits", model="resnet", distance="cosine", temperature=0.02, steps=150, batch_size=64,
                  lr=1e-3, size=32, channels=3, log_every=10, eval_every=150),
    "paper": dict(dataset="cifar10", log_every=100, eval_every=1000, **RESNET_PAPER,
                  # where CIFAR-10 is missing (Fashion-MNIST at 32x32 stands in): what a CPU affords, 10,000
                  # steps at batch 64 (the paper's 20,776 at batch 256 take ~1 s each on one CPU core),
                  # the learning rate scaled with the batch (0.4 * 64 / 256) and decayed to 1% over the
                  # run as the paper's over 106 epochs; entanglement measured 21 times (every 500 steps)
                  substitute=dict(steps=10000, batch_size=64, lr=0.1, decay_steps=94, log_every=50,
                                  eval_every=1000, measure_points=21)),
}
PROFILES = {"15": PROFILES_FIG15, "3": PROFILES_FIG3_16}  # per figure (Fig. 16 is Fig. 3's run)
PRESETS = {(f, p): v for f, profiles in PROFILES.items() for p, v in profiles.items()}  # its former name
EXPERIMENTS = {"15": "fig15", "3": "fig3_16"}


def _isometric(x: torch.Tensor) -> torch.Tensor:
    """Rows with the same pairwise distances, inner products and norms in at most ``len(x)``
    dimensions (``x.T = QR`` gives ``x Q = R.T``): makes the entanglement search over T cheap
    for wide conv layers without changing its value."""
    x = x.flatten(1).double()
    if x.shape[1] <= x.shape[0]:
        return x
    return torch.linalg.qr(x.T, mode="r").R.T


def inner_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules whose outputs are the layers inside the ResNet's last block (Fig. 3): its two
    convolutions, named ``block<k>.conv1``, ``block<k>.conv2``; empty for other models."""
    blocks = getattr(model, "blocks", None)
    if not blocks:
        return {}
    k = len(blocks)
    return {f"block{k}.conv1": blocks[-1].conv1, f"block{k}.conv2": blocks[-1].conv2}


@torch.no_grad()
def layer_entanglement(model: nn.Module, x: torch.Tensor, y: torch.Tensor, distance: str = "euclidean",
                       inner: bool = True) -> dict[str, float]:
    """Entanglement (Eq. 2, min over T) of every hidden layer of ``model`` on the batch (x, y),
    plus the layers inside the ResNet's last block when ``inner``. The model runs on a copy in
    training mode (batch statistics, as in training; the model itself is untouched)."""
    m = copy.deepcopy(model).train()
    captured, hooks = {}, []
    for name, mod in (inner_layers(m).items() if inner else ()):
        hooks.append(mod.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out)))
    try:
        _, hidden = m(x.to(next(m.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    reps = {**captured, **hidden}
    return {n: float(entanglement(_isometric(v), y.to(v.device), distance).value) for n, v in reps.items()}


@dataclass
class LayerEntanglement:
    """Curves of one run of :func:`layer_entanglement_over_training`."""

    figure: str  # "15" or "3" (Figs. 3 and 16 come from the same run)
    dataset: str  # the dataset actually used
    substitute_for: str | None  # the paper's dataset it stands in for, or None
    data_note: str  # one line on the data used
    model: str
    distance: str
    steps: list[int]  # steps of the logged training batches
    batch_snnl: dict[str, list[float]]  # layer -> SNNL of the training batch at the learned T
    temperature: dict[str, list[float]]  # layer -> learned temperature at those steps
    measure_steps: list[int]  # steps at which the fixed batch was measured
    entanglement: dict[str, list[float]]  # layer -> min over T on the fixed batch
    test_accuracy: float
    config: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_record(cls, record: dict) -> "LayerEntanglement":
        """Rebuild the curves from a results record written by :func:`layer_entanglement_over_training`."""
        c, h = record["config"], record["history"]
        return cls(c["figure"], record["dataset"], c.get("substitute_for"), c.get("data_note", ""), c["model"],
                   c["distance"], h["step"], h["snnl"], h["temperature"], h["measure_step"], h["entanglement"],
                   record["metrics"]["test_accuracy"], c, record)

    @property
    def data_label(self) -> str:
        """The dataset used and what it stands in for, e.g. ``"fashion-mnist (substitute for cifar10)"``."""
        return data_label(self)

    @property
    def blocks(self) -> list[str]:
        """The layers of Fig. 16 (each residual block's output and the pooled features) or, for
        the CNN1, its hidden layers."""
        return [n for n in self.entanglement if "." not in n]

    @property
    def last_block(self) -> list[str]:
        """The layers of Fig. 3 (inside the last residual block, then its output)."""
        inner = [n for n in self.entanglement if "." in n]
        return inner + [inner[0].split(".")[0]] if inner else []

    def change(self, which: str = "entanglement") -> dict[str, tuple[float, float]]:
        """Per layer ``(start, end)``: the first and the last value (for the batch SNNL the
        mean of the first and of the last three logged batches)."""
        if which == "entanglement":
            return {n: (v[0], v[-1]) for n, v in self.entanglement.items()}
        return {n: (sum(v[:3]) / len(v[:3]), sum(v[-3:]) / len(v[-3:])) for n, v in self.batch_snnl.items()}

    def summary(self) -> str:
        """One line per layer: start -> end of both measures."""
        lines = [f"Fig. {'15' if self.figure == '15' else '3/16'}: {self.model} on {self.data_label}, "
                 f"{self.config.get('steps', '?')} steps, {self.distance} distance, "
                 f"test accuracy {self.test_accuracy:.4f}"]
        batch = self.change("batch")
        for n, (a, b) in self.change().items():
            extra = f"; training-batch SNNL {batch[n][0]:.3f} -> {batch[n][1]:.3f}" if n in batch else ""
            lines.append(f"  {n:14s} entanglement {a:.3f} -> {b:.3f} ({b - a:+.3f}){extra}")
        return "\n".join(lines)


def _measure_steps(steps: int, points: int) -> list[int]:
    return sorted({round(steps * i / (points - 1)) for i in range(points)}) if points > 1 else [steps]


def layer_entanglement_over_training(figure: str = "15", profile: str = "small", *, dataset: str | None = None,
                                     seed: int = 0, device: str = "auto", data: Dataset | None = None,
                                     measure_points: int = 7, measure_size: int = 256, measure_split: str = "test",
                                     out_dir=None, reuse: bool = False, progress: bool = True,
                                     substitute: bool = True, checkpoint_dir=None, **overrides) -> LayerEntanglement:
    """Train with cross-entropy only and follow each layer's entanglement (Figs. 15, 3, 16).

    Args:
        figure: ``"15"`` (CNN1, Euclidean) or ``"3"``/``"16"`` (ResNet v2, cosine; one run
            gives both figures).
        profile: ``"small"`` (digits, a few hundred steps on a CPU) or ``"paper"`` (MNIST /
            CIFAR-10 at the paper's settings, see :data:`PROFILES`).
        dataset: overrides the profile's dataset; a missing CIFAR-10 is replaced by its
            substitute (:data:`SUBSTITUTES`) unless ``substitute=False``.
        data: an already loaded dataset (then ``dataset`` only names it).
        measure_points, measure_size, measure_split: entanglement on a fixed batch of
            ``measure_size`` images of the ``"test"`` (default) or ``"train"`` split at
            ``measure_points`` evenly spaced steps (0 to the end).
        out_dir: write a results record (experiment ``fig15`` or ``fig3_16``) there.
        reuse: return the curves of a record under ``out_dir`` with the same config, if any,
            instead of training again (e.g. the paper-profile records under ``results/``).
        checkpoint_dir: keep the training checkpoint and the measurements so far there, so that a
            killed run resumes where it stopped.
        overrides: any :class:`snnl.train.TrainConfig` field (``steps=``, ``lr=``...).

    Where the profile's dataset is replaced by its substitute, the profile's ``substitute``
    settings (if any) replace its own, overrides aside.
    """
    figure = {"16": "3"}.get(str(figure), str(figure))
    if figure not in PROFILES:
        raise ValueError(f"unknown figure {figure!r}; choose one of: 15, 3, 16")
    params = dict(profile_values(PROFILES[figure], profile))
    sub_params = params.pop("substitute", {})
    params.update(overrides)
    if measure_points < 1 or measure_size < 2:
        raise ValueError(f"measure_points must be >= 1 and measure_size >= 2, got {measure_points}, {measure_size}")
    if measure_split not in ("test", "train"):
        raise ValueError(f"measure_split must be 'test' or 'train', got {measure_split!r}")
    if dataset is not None:
        params["dataset"] = dataset
    cfg = TrainConfig(alpha=0.0, seed=seed, device=device, profile=profile, experiment=EXPERIMENTS[figure], **params)
    if data is None:
        data, substitute_for, note = load_or_substitute(cfg.dataset, size=cfg.size, channels=cfg.channels,
                                                        n_train=cfg.n_train, n_test=cfg.n_test, seed=seed,
                                                        substitute=substitute)
        if substitute_for and sub_params:
            measure_points = sub_params.get("measure_points", measure_points)
            params.update({k: v for k, v in sub_params.items() if k not in overrides and k != "measure_points"})
            cfg = TrainConfig(alpha=0.0, seed=seed, device=device, profile=profile, experiment=EXPERIMENTS[figure],
                              **params)
            note += f"; {cfg.steps:,} steps at batch {cfg.batch_size} (the CPU's budget)"
    else:
        substitute_for, note = None, ""
    cfg.dataset = data.name
    xs, ys = (data.x_test, data.y_test) if measure_split == "test" else (data.x_train, data.y_train)
    idx = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed + 2))[:measure_size]
    xm, ym = xs[idx], ys[idx]
    when = set(_measure_steps(cfg.steps, measure_points))
    saved = None if checkpoint_dir is None else Path(checkpoint_dir) / "entanglement.json"
    measured: dict[int, dict[str, float]] = {}
    if saved is not None and saved.exists():  # a resumed run: the measurements it made before
        measured = {int(k): v for k, v in json.loads(saved.read_text()).items()}

    def callback(step, model):
        if step in when:
            measured[step] = layer_entanglement(model, xm, ym, cfg.distance)
            if saved is not None:
                tmp = saved.with_suffix(".tmp")
                tmp.write_text(json.dumps(measured))
                tmp.replace(saved)

    config = {**asdict(cfg), "figure": figure, "substitute_for": substitute_for, "data_note": note,
              "measure_points": measure_points, "measure_size": measure_size, "measure_split": measure_split}
    if reuse and (rec := find_record(out_dir, cfg.experiment, config)) is not None:
        return LayerEntanglement.from_record(rec)
    run = Run(cfg.experiment, profile, data.name, seed, config)
    res = train(cfg, data, progress=progress, callback=callback, checkpoint_dir=checkpoint_dir)
    steps = sorted(measured)
    ent = {n: [measured[s][n] for s in steps] for n in measured[steps[0]]}
    out = LayerEntanglement(figure, data.name, substitute_for, note, cfg.model, cfg.distance,
                            res.history["step"], res.history["snnl"], res.history["temperature"], steps, ent,
                            res.metrics["test_accuracy"], config)
    metrics = {"test_accuracy": out.test_accuracy,
               "entanglement_start": {n: v[0] for n, v in ent.items()},
               "entanglement_end": {n: v[-1] for n, v in ent.items()},
               "batch_snnl_start": {n: a for n, (a, _) in out.change("batch").items()},
               "batch_snnl_end": {n: b for n, (_, b) in out.change("batch").items()}}
    out.record = finish_run(run, metrics, out_dir, {**res.history, "measure_step": steps, "entanglement": ent},
                            device=res.record["device"])
    return out


# ----------------------------------------------------------------------------------------------
# command line
# ---- the reproduction report's rows -------------------------------------------------------------
LAST = 5  # Fig. 16: the share of its entanglement a block keeps, over the last LAST measurements


def fig15_items(recs):
    def judge(rec):
        r = LayerEntanglement.from_record(rec)
        k = max(3, len(r.steps) // 10)  # the first and the last tenth of the logged training batches
        out, status = [], []
        for n, v in r.batch_snnl.items():
            c = compare(v[-k:], v[:k])
            out.append(f"{n} {c.b.mean:.2f} → {c.a.mean:.2f} ({fmt_ci(c.diff_ci, '.2f')})")
            status.append(judged(c.diff_ci, higher=False))
        return "; ".join(out), all_hold(status), f"first vs last {k} logged training batches (Welch)"
    return per_dataset("Fig. 15", "Fig. 15: per-layer SNNL over training (CE only)", PAPER["Fig. 15"],
                       "fig15", recs, ["mnist"], stands_for, judge,
                       "in every hidden layer the training-batch SNNL ends lower: 95% CI of last - first below 0")


def _reduced(rec) -> str:
    c = rec["config"]
    return "" if not c.get("substitute_for") else (f"{c.get('steps'):,} of the paper's {RESNET_PAPER['steps']:,} "
                                                   f"steps, batch {c.get('batch_size')} of {RESNET_PAPER['batch_size']}")


def fig3_16_items(recs):

    def fig16(rec):
        r = LayerEntanglement.from_record(rec)
        last, lower = r.blocks[-2], [n for n in r.blocks[:-2] if r.entanglement[n][0] > 0]
        keep = {n: [x / r.entanglement[n][0] for x in r.entanglement[n][-LAST:]] for n in [*lower, last]}
        status, parts, highs = [], [], []
        for n in lower:
            c = compare(keep[last], keep[n])
            status.append(judged(c.diff_ci, higher=False))
            parts.append(f"{n} {100 * c.b.mean:.0f}%")
            highs.append(float("nan") if c.diff_ci is None else 100 * c.diff_ci[1])
        return (f"share kept: {last} {100 * sum(keep[last]) / LAST:.0f}% vs " + ", ".join(parts)
                + f"; the 95% CIs of last - lower reach at most {max(highs):+.0f} points",
                all_hold(status), f"{rec['config'].get('steps')} steps, cosine; shares over the last {LAST} "
                "measurements, last block - each lower block (Welch)")

    def fig3(rec):
        r = LayerEntanglement.from_record(rec)
        inner = r.last_block[:-1]
        curve, step = r.entanglement, r.measure_steps
        status, parts = [], []
        for n in r.last_block:
            i = curve[n].index(min(curve[n]))
            after = curve[n][i:]
            rho, p = (spearmanr(step[i:], after) if len(after) >= 4 else (float("nan"), 1.0))
            rises = rho > 0 and p < 0.05
            falls = rho < 0 and p < 0.05
            if n in inner:
                status.append(HOLDS if rises else FAILS if falls else INCONCLUSIVE)
            else:
                status.append(FAILS if rises else HOLDS if curve[n][-1] < curve[n][0] else INCONCLUSIVE)
            parts.append(f"{n} {curve[n][0]:.3f} → min {min(curve[n]):.3f} → {curve[n][-1]:.3f} "
                         f"(after the minimum: Spearman {rho:.2f}, p = {fmt_p(p)})")
        return "; ".join(parts), all_hold(status), ""

    return (per_dataset("Fig. 16", "Fig. 16: per residual block", PAPER["Fig. 16"],
                        "fig3_16", recs, ["cifar10"], stands_for, fig16,
                        "the last block keeps a smaller share of its entanglement than every lower block "
                        "(95% CI of the difference below 0)", reduced_of=_reduced)
            + per_dataset("Fig. 3", "Fig. 3: inside the last block", PAPER["Fig. 3"],
                          "fig3_16", recs, ["cifar10"], stands_for, fig3,
                          "each inner layer rises after its minimum (Spearman with the step, p < 0.05); the "
                          "block's output does not, and ends below its start", reduced_of=_reduced))


def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Figs. 15, 16 and 3, from the paper-profile records by
    experiment."""
    return fig15_items(records.get("fig15", [])) + fig3_16_items(records.get("fig3_16", []))


def main(argv=None) -> int:
    """``python -m snnl.experiments.discriminative --figure 15 --profile paper --out results/paper/fig15``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m snnl.experiments.discriminative",
                                description="Entanglement of every layer over cross-entropy training (Figs. 15, 3, 16).")
    p.add_argument("--figure", choices=("15", "3", "16"), default="15", help="15: CNN1; 3 or 16: the ResNet (both)")
    p.add_argument("--profile", choices=("small", "paper"), default="small")
    p.add_argument("--dataset", help="instead of the profile's (a missing CIFAR-10 is substituted, and named)")
    p.add_argument("--steps", type=int, help="instead of the profile's training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="folder for the results record")
    p.add_argument("--checkpoint-dir", help="keep the checkpoint and measurements here: a killed run resumes")
    a = p.parse_args(argv)
    r = layer_entanglement_over_training(a.figure, a.profile, dataset=a.dataset, seed=a.seed, device=a.device,
                                         out_dir=a.out, checkpoint_dir=a.checkpoint_dir,
                                         **({"steps": a.steps} if a.steps else {}))
    print(r.summary())
    print(f"record: {r.record['path']}")
    return 0
