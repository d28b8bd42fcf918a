"""Entanglement of real and synthetic data (paper Section 3.2, Appendices D and I).

* :func:`gan_entanglement` (Figs. 4, 5, 17): train a GAN (``fc`` or ``dcgan``) and measure,
  at regular steps, the entanglement (Eq. 2) of equal parts real and generated images in pixel
  space; t-SNE of real vs synthetic at a few stages. The paper: entanglement rises.
* :func:`snnl_gan` (Fig. 6): no discriminator; the generator maximises the soft nearest
  neighbor loss of real vs generated pixels. Sample grid, a grid sweeping 2 noise dimensions,
  and what the paper only describes: a CNN trained on the real digits classifies the samples
  (class histogram, ``class_coverage`` = classes with at least 1% of the samples).
* :func:`snnl_gan_learned` (Fig. 23, App. I): a discriminator with a 10-d output minimises the
  loss of real vs synthetic in that space; the generator maximises it. Sample grids over training.

Each function returns a :class:`snnl.gan.GANResult` whose ``record`` is the results record
(written under ``out_dir`` when given, by :func:`snnl.experiments.common.records.finish_run`). Sample
grids and t-SNE coordinates are kept in the records, so that the book redraws every figure from
this run's record or a committed one with the same call: the figures, tables and the records'
encoding are in :mod:`snnl.experiments.generative.plots` (also offered here). Command line (the
paper profile)::

    python -m snnl.experiments.generative --profile paper --out results/paper/gan --checkpoints runs/gan
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from sklearn.manifold import TSNE

from snnl.data import Dataset, load_dataset
from snnl.experiments.common import finish_run, profile_values
from snnl.experiments.generative.plots import (  # noqa: F401 (re-exported: one import for chapters)
    COVERAGE_THRESHOLD, EXPERIMENTS, decode_grid, decode_points, describe, encode_grid, encode_points, label,
    plot_class_histograms, plot_entanglement, plot_grids, plot_samples, plot_snapshots, plot_snnl_generator, plot_tsne,
    table_generators)
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE, VARIANT, against, fmt_ci, fmt_num, per_dataset
from snnl.gan import GANConfig, GANResult, sample, train_gan
from snnl.results import Run, device_name, resolve_device
from snnl.stats import fmt_p, proportion_ci
from snnl.train import TrainConfig, TrainResult, train

# The paper's claims (Section 3.2, Apps. D, I: pictures, no numbers)
PAPER = {"Figs. 4, 5, 17": "rises over training", "Fig. 6": "varied digits of all classes",
         "Fig. 23": "samples approach the data"}


@dataclass(frozen=True)
class Profile:
    dataset: str = "digits"  # the embedded digits (small) or mnist (paper)
    gan_steps: tuple[tuple[str, int], ...] = (("fc", 300), ("dcgan", 250))  # steps per GAN variant
    snnl_steps: int = 250  # steps of the SNNL generator (Fig. 6)
    learned_steps: int = 350  # steps of the learned-space SNNL-GAN (App. I)
    snnl_temperature: float = 5.0  # pixel-space T, below the typical nearest-neighbour distance
    snnl_lr: float = 1e-3  # Adam learning rate of the SNNL generator
    measure_every: int = 50  # steps between entanglement measurements
    measure_size: int = 200  # real and as many generated images per measurement
    tsne_points: int = 150  # real and as many generated points per t-SNE panel
    n_samples: int = 500  # generated images classified for the class histogram
    classifier_steps: int = 200  # CNN (snnl.train) steps for the coverage classifier
    stages: int = 3  # snapshots (t-SNE, grids) at evenly spaced measurement steps


PROFILES = {
    "small": Profile(),
    "paper": Profile(dataset="mnist", gan_steps=(("fc", 5000), ("dcgan", 3000)), snnl_steps=3000,
                     learned_steps=3000, snnl_temperature=8.0, measure_every=250, measure_size=500,
                     tsne_points=300, n_samples=2000, classifier_steps=1500, stages=4),
}


def get_profile(profile: str) -> Profile:
    """The settings of ``profile`` (small or paper)."""
    return profile_values(PROFILES, profile)


# ----------------------------------------------------------------------------------------------
# measurements: t-SNE of real vs synthetic, class histograms
def tsne_real_fake(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE (scikit-learn, PCA init) of real and generated images together; the
    coordinates of the real and of the generated images."""
    x = torch.cat([real.flatten(1), fake.flatten(1)]).numpy().astype(np.float64)
    emb = TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    return emb[:len(real)], emb[len(real):]


@torch.no_grad()
def class_histogram(classifier: nn.Module, images: torch.Tensor, threshold: float = COVERAGE_THRESHOLD) -> dict:
    """Classify ``images``; the share per class, the number of classes with at least
    ``threshold`` of them (``class_coverage``) and the mean top-class probability."""
    was = classifier.training
    classifier.eval()
    dev = next(classifier.parameters()).device
    probs = torch.cat([classifier(images[i:i + 500].to(dev))[0].softmax(1).cpu() for i in range(0, len(images), 500)])
    classifier.train(was)
    hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(images)
    return {"class_histogram": [round(float(h), 4) for h in hist], "class_coverage": int((hist >= threshold).sum()),
            "coverage_threshold": threshold, "mean_confidence": float(probs.max(1).values.mean())}


def coverage_classifier(profile: str = "small", seed: int = 0, device: str = "auto", data: Dataset | None = None,
                        steps: int | None = None, checkpoint_dir=None, progress: bool = True) -> TrainResult:
    """Table 1's CNN trained on the profile's real data with cross-entropy (``snnl.train``)."""
    p = get_profile(profile)
    cfg = TrainConfig(dataset=p.dataset, model="cnn", lr=1e-3, batch_size=128, steps=steps or p.classifier_steps,
                      eval_every=steps or p.classifier_steps, log_every=steps or p.classifier_steps,
                      eval_train_size=1000, seed=seed, device=device, profile=profile, experiment="gan_classifier")
    return train(cfg, data=data, checkpoint_dir=checkpoint_dir, progress=progress)


def noise_sweep(generator: nn.Module, z_dim: int, dims: tuple[int, int] = (0, 1), n: int = 8,
                span: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Fig. 6's grid: one random noise vector, dimensions ``dims`` swept over ``[-span, span]``
    (rows: the first, columns: the second), the others fixed. Returns (n*n, C, H, W)."""
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < z_dim for d in dims):
        raise ValueError(f"dims must be two different dimensions in [0, {z_dim}), got {dims}")
    z = torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed)).repeat(n * n, 1)
    v = torch.linspace(-span, span, n)
    z[:, dims[0]] = v.repeat_interleave(n)
    z[:, dims[1]] = v.repeat(n)
    return sample(generator, z)


# ----------------------------------------------------------------------------------------------
def _stage_steps(steps: int, every: int, stages: int) -> tuple[int, ...]:
    marks = sorted(set(range(0, steps, every)) | {steps})
    return tuple(marks[round(i * (len(marks) - 1) / (stages - 1))] for i in range(stages)) if stages > 1 else (steps,)


def _config(objective: str, variant: str, profile: str, seed: int, device: str, steps: int, **kw) -> GANConfig:
    p = get_profile(profile)
    return GANConfig(objective=objective, variant=variant, dataset=p.dataset, steps=steps,
                     measure_every=min(p.measure_every, steps), measure_size=p.measure_size,
                     snapshot_steps=_stage_steps(steps, min(p.measure_every, steps), p.stages),
                     n_samples=max(64, p.tsne_points), seed=seed, device=device, profile=profile, **kw)


def _finish(run: Run, res: GANResult, out_dir, extra: dict, grids: dict, snapshots: list[dict],
            classifier: TrainResult | None, samples: int) -> GANResult:
    metrics = dict(res.metrics)
    ms, ent = res.history["measure_step"], res.history["entanglement"]
    rho = spearmanr(ms, ent).statistic if len(set(ent)) > 1 else 0.0
    metrics.update(entanglement_spearman=float(rho), entanglement_rises=bool(ent[-1] > ent[0]), **extra)
    if classifier is not None:
        z = torch.randn(samples, res.config.z_dim, generator=torch.Generator().manual_seed(res.config.seed + 2))
        metrics.update(class_histogram(classifier.model, sample(res.generator, z)))
        metrics["classifier_test_accuracy"] = classifier.metrics["test_accuracy"]
        metrics["classified_samples"] = samples
    history = {**res.history, "snapshots": snapshots, "grids": grids}
    res.record = finish_run(run, metrics, out_dir, history)
    res.metrics = metrics
    return res


def _ckpt(root, name: str):
    return None if root is None else Path(root) / name


def gan_entanglement(variant: str = "dcgan", profile: str = "small", seed: int = 0, device: str = "auto",
                     steps: int | None = None, data: Dataset | None = None, classifier: TrainResult | None = None,
                     out_dir=None, checkpoint_dir=None, progress: bool = True) -> GANResult:
    """Figs. 4, 5, 17: a GAN's real/synthetic entanglement over training, t-SNE per stage.

    Metrics: entanglement start/end/max, its Spearman correlation with the step, the 1-NN
    two-sample accuracy start/end, and (given ``classifier``) the class histogram of samples."""
    p = get_profile(profile)
    steps = steps or dict(p.gan_steps).get(variant, p.gan_steps[-1][1])
    cfg = _config("gan", variant, profile, seed, device, steps, experiment="gan_entanglement")
    data = data if data is not None else load_dataset(p.dataset)
    run = Run("gan_entanglement", profile, data.name, seed, asdict(cfg), device_name(resolve_device(device)))
    res = train_gan(cfg, data, checkpoint_dir=_ckpt(checkpoint_dir, f"gan_{variant}_seed{seed}"), progress=progress)
    n = p.tsne_points
    snaps = []
    for s, fake in sorted(res.snapshots.items()):
        tr, tf = tsne_real_fake(res.eval_real[:n], fake[:n], seed)
        snaps.append({"step": s, "tsne_real": encode_points(tr), "tsne_fake": encode_points(tf),
                      "grid": encode_grid(fake[:36], nrow=6)})
    return _finish(run, res, out_dir, {"variant": variant}, {}, snaps, classifier, p.n_samples)


def snnl_gan(profile: str = "small", seed: int = 0, device: str = "auto", steps: int | None = None,
             variant: str = "dcgan", data: Dataset | None = None, classifier: TrainResult | None = None,
             out_dir=None, checkpoint_dir=None, progress: bool = True, g_loss: str = "nonsaturating",
             temperature: float | None = None) -> GANResult:
    """Fig. 6: the generator alone maximises the SNNL of real vs generated pixels. Grids of
    samples and of a 2-dimension noise sweep; with ``classifier`` (else one is trained) the
    class histogram and ``class_coverage`` of the samples.

    ``g_loss="nonsaturating"`` (default) minimises ``-mean log P(other class)``; ``"maximize"``
    is the paper's ``-l_sn``, which on MNIST collapses every sample onto the mean digit: 64
    copies of the mean image, nearer to each real image than most real images are to each
    other, outweigh its one nearest real neighbour at any usable temperature."""
    p = get_profile(profile)
    t = temperature or p.snnl_temperature
    cfg = _config("snnl", variant, profile, seed, device, steps or p.snnl_steps, lr=p.snnl_lr, g_loss=g_loss,
                  temperature=t, learn_temperature=False, experiment="snnl_gan")
    data = data if data is not None else load_dataset(p.dataset)
    run = Run("snnl_gan", profile, data.name, seed, asdict(cfg), device_name(resolve_device(device)))
    if classifier is None:
        classifier = coverage_classifier(profile, seed, device, data, progress=progress)
    ckpt = _ckpt(checkpoint_dir, f"snnl_{variant}_{g_loss}_T{t:g}_seed{seed}")
    res = train_gan(cfg, data, checkpoint_dir=ckpt, progress=progress)
    final = res.snapshots[cfg.steps]
    grids = {"samples": encode_grid(final[:64]),
             "sweep": encode_grid(noise_sweep(res.generator, cfg.z_dim, seed=seed), nrow=8)}
    snaps = [{"step": s, "grid": encode_grid(f[:36], nrow=6)} for s, f in sorted(res.snapshots.items())]
    real = class_histogram(classifier.model, res.eval_real)
    extra = {"variant": variant, "real_class_coverage": real["class_coverage"]}
    return _finish(run, res, out_dir, extra, grids, snaps, classifier, p.n_samples)


def snnl_gan_learned(profile: str = "small", seed: int = 0, device: str = "auto", steps: int | None = None,
                     variant: str = "dcgan", data: Dataset | None = None, classifier: TrainResult | None = None,
                     out_dir=None, checkpoint_dir=None, progress: bool = True,
                     g_loss: str = "nonsaturating") -> GANResult:
    """Fig. 23 (App. I): the discriminator minimises the SNNL of real vs synthetic in a learned
    10-d space (cosine distance, T = 0.5), the generator maximises it: ``g_loss="maximize"`` is the
    paper's objective (-SNNL), ``"nonsaturating"`` our variant (see
    :func:`snnl.gan.log_other_class_probability`). Sample grids over training."""
    p = get_profile(profile)
    cfg = _config("snnl-learned", variant, profile, seed, device, steps or p.learned_steps, distance="cosine",
                  temperature=0.5, learn_temperature=False, g_loss=g_loss, experiment="snnl_gan_learned")
    data = data if data is not None else load_dataset(p.dataset)
    run = Run("snnl_gan_learned", profile, data.name, seed, asdict(cfg), device_name(resolve_device(device)))
    res = train_gan(cfg, data, checkpoint_dir=_ckpt(checkpoint_dir, f"learned_{variant}_{g_loss}_seed{seed}"),
                    progress=progress)
    snaps = [{"step": s, "grid": encode_grid(f[:36], nrow=6)} for s, f in sorted(res.snapshots.items())]
    d = res.history["d_loss"]
    extra = {"variant": variant, "learned_snnl_end": float(np.mean(d[-max(1, len(d) // 10):]))}
    return _finish(run, res, out_dir, extra, {}, snaps, classifier, p.n_samples)


# ---- the reproduction report's rows -------------------------------------------------------------
def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Figs. 4-6, 17 and 23, from the paper-profile records by
    experiment."""

    def rises(rec):
        m, h = rec["metrics"], rec.get("history") or {}
        rho, p = (spearmanr(h["measure_step"], h["entanglement"]) if len(h.get("entanglement") or []) >= 4
                  else (m.get("entanglement_spearman"), None))
        up = m["entanglement_end"] > m["entanglement_start"]
        status = (INCONCLUSIVE if p is None or p >= 0.05 else HOLDS if rho > 0 and up else FAILS)
        return (f"entanglement {m['entanglement_start']:.3f} → {m['entanglement_end']:.3f} "
                f"(Spearman with the step {fmt_num(rho, '.2f')}, p = {fmt_p(p)})", status,
                f"{rec['config'].get('steps')} steps")

    def variant(r):
        return f"{r['dataset']}, {(r.get('config') or {}).get('variant') or r['metrics'].get('variant')}"

    def coverage(rec):
        m = rec["metrics"]
        hist, n = m.get("class_histogram") or [], m.get("classified_samples") or 2000
        least = min(range(len(hist)), key=hist.__getitem__) if hist else None
        ci = proportion_ci(round(hist[least] * n), n) if hist else None
        t = m.get("coverage_threshold", 0.01)
        status = against(ci, t)
        return (f"{m['class_coverage']} of {len(hist)} classes ≥ {t:.0%} of {n} samples; the rarest, class {least}: "
                f"{hist[least]:.1%} ({fmt_ci(ci, '.3f')})" if hist else "no class histogram", status,
                f"real data: {m.get('real_class_coverage')} classes; classifier accuracy "
                f"{fmt_num(m.get('classifier_test_accuracy'))}")

    def g_loss(rec):
        return (rec.get("config") or {}).get("g_loss", "maximize")

    def by_objective(exp, paper_objective):
        recs = records.get(exp, [])
        return ([r for r in recs if g_loss(r) == "maximize"] if paper_objective
                else [r for r in recs if g_loss(r) != "maximize"])

    cover = "the rarest class's share of the samples (a CNN's labels; Wilson 95% CI) at or above 1%"
    return (per_dataset("Figs. 4, 5, 17", "Figs. 4, 5, 17: GAN real/synthetic entanglement rises", PAPER["Figs. 4, 5, 17"],
                        "gan_entanglement", records.get("gan_entanglement", []),
                        ["cifar10, dcgan", "cifar10, fc", "mnist, dcgan", "mnist, fc"], variant, rises,
                        "entanglement ends above its start and rises with the step (Spearman, p < 0.05)")
            + per_dataset("Fig. 6", "Fig. 6: SNNL generator covers every class", PAPER["Fig. 6"],
                          "snnl_gan", by_objective("snnl_gan", True), ["mnist"], lambda r: r["dataset"], coverage,
                          cover + "; the paper's generator objective, maximising the SNNL (-l_sn)")
            + per_dataset("Fig. 6", "Fig. 6 with our non-saturating generator loss (a variant)", PAPER["Fig. 6"],
                          "snnl_gan", by_objective("snnl_gan", False), [], lambda r: r["dataset"], coverage,
                          cover, kind=VARIANT)
            + per_dataset("Fig. 23", "Fig. 23: SNNL-GAN in a learned space", PAPER["Fig. 23"],
                          "snnl_gan_learned", by_objective("snnl_gan_learned", True), ["mnist"],
                          lambda r: r["dataset"], rises, "real/synthetic pixel-space entanglement rises (Spearman "
                          "with the step, p < 0.05) and ends above its start; the paper's generator objective")
            + per_dataset("Fig. 23", "Fig. 23 with our non-saturating generator loss (a variant)", PAPER["Fig. 23"],
                          "snnl_gan_learned", by_objective("snnl_gan_learned", False), [],
                          lambda r: r["dataset"], rises, "real/synthetic pixel-space entanglement rises (Spearman "
                          "with the step, p < 0.05) and ends above its start", kind=VARIANT))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m snnl.experiments.generative", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="small", choices=tuple(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="folder for the results records")
    ap.add_argument("--checkpoints", default=None, help="folder for checkpoints (a killed run resumes)")
    ap.add_argument("--only", nargs="*", default=None, choices=("fc", "dcgan", "snnl_gan", "snnl_gan_learned"))
    ap.add_argument("--snnl-g-loss", default="nonsaturating", choices=("maximize", "nonsaturating"),
                    help="the SNNL generators' loss: maximize (the paper's -SNNL) or nonsaturating (our variant)")
    ap.add_argument("--snnl-temperature", type=float, default=None, help="pixel-space T (default: the profile's)")
    a = ap.parse_args(argv)
    p = get_profile(a.profile)
    data = load_dataset(p.dataset)
    todo = a.only or [v for v, _ in p.gan_steps] + ["snnl_gan", "snnl_gan_learned"]
    clf = coverage_classifier(a.profile, a.seed, a.device, data, checkpoint_dir=_ckpt(a.checkpoints, "classifier"))
    print(f"classifier test accuracy {clf.metrics['test_accuracy']:.4f}", flush=True)
    kw = dict(profile=a.profile, seed=a.seed, device=a.device, data=data, classifier=clf, out_dir=a.out,
              checkpoint_dir=a.checkpoints)
    for what in todo:
        if what == "snnl_gan":
            res = snnl_gan(**kw, g_loss=a.snnl_g_loss, temperature=a.snnl_temperature)
        elif what == "snnl_gan_learned":
            res = snnl_gan_learned(**kw, g_loss=a.snnl_g_loss)
        else:
            res = gan_entanglement(what, **kw)
        m = res.metrics
        print(f"{res.record['experiment']} {what}: entanglement {m['entanglement_start']:.3f} -> "
              f"{m['entanglement_end']:.3f}, 1-NN accuracy {m['nn_accuracy_start']:.3f} -> "
              f"{m['nn_accuracy_end']:.3f}, coverage {m.get('class_coverage')}, "
              f"{res.record['wall_seconds']:.0f} s", flush=True)
