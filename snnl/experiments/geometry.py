"""Entangled representations under attack and out of distribution (paper Section 5, Apps. G, H).

One module per experiment:

* Figs. 10, 11 (Section 5.2): the gradients a targeted FGSM attack follows, on two models
  (:mod:`snnl.experiments.adversarial_gradients`);
* Figs. 12, 21 (Section 5.3, App. G): out-of-distribution inputs set apart
  (:mod:`snnl.experiments.ood`);
* Fig. 22 (App. H): adversarial points in the first hidden layer
  (:mod:`snnl.experiments.hidden_adversarial`);
* Table 2 (App. E): entanglement of a PGD-trained model (:mod:`snnl.experiments.robustness`).

This module holds what they share: the configuration (:class:`GeometryConfig`, profiles), the
data, the trained models (reusing finished checkpoints), t-SNE and kNN measurements, the
figures, and the command line ``python -m snnl.experiments.geometry``, which runs all four. The
experiments' functions can be imported from here too.

Every ``run_*`` function returns plain data (numpy arrays and floats) and, given ``out_dir``,
writes a record with :class:`snnl.results.Run` (embeddings rounded into the record's history).
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from snnl.data import DATASETS, Dataset, load_dataset
from snnl.experiments.checkpoints import await_checkpoint, checkpoint_step
from snnl.results import Run, device_name, resolve_device, seed_everything
from snnl.train import TrainConfig, train

SYNTHETIC_OOD = ("shuffled", "noise")  # pixel-permuted in-distribution test images; uniform noise
SHORT = {"fashion-mnist": "fmnist"}  # checkpoint folder names: t1_<short>_a<alpha>_s<seed>


@dataclass
class GeometryConfig:
    profile: str = "small"  # small (digits, CPU, ~2 min) or paper (MNIST/notMNIST/Fashion-MNIST)
    dataset: str = "digits"  # in-distribution data of Figs. 10-12 and Table 2 (paper: mnist)
    ood_dataset: str = "shuffled"  # OOD test data: a dataset name (notmnist, cifar10) or shuffled/noise
    hidden_dataset: str = "digits"  # data of Fig. 22 (paper: fashion-mnist)
    n_train: int | None = None  # training subset for the models (None = all)
    size: int | None = 16  # resize images to size x size (small: 16, cheaper; paper: None = 28)
    alpha: float = 10.0  # SNNL weight of the entangled models (Eq. 3; Table 1 uses 10)
    train_steps: int = 150  # training steps of every model (paper profile: Table 1's 14,000)
    second_seed_steps: int | None = None  # steps of the second-seed models (None = train_steps)
    second_seed_experiment: str | None = None  # their TrainConfig experiment name (None = model_experiment)
    second_seed_checkpoint: str | None = None  # their folder: a pattern of dataset, short, alpha, seed, steps
    batch_size: int = 64  # training batch (Table 1: 256)
    lr: float = 2e-3  # Adam learning rate (Table 1: 1e-4)
    model_experiment: str = "geometry"  # experiment name of the models' TrainConfig ("table1" = reuse)
    checkpoint_root: str | None = None  # folder of model checkpoints t1_<data>_a<alpha>_s<seed> (None: none)
    wait: float = 0.0  # seconds to wait for a checkpoint another process is still training
    seeds: tuple[int, int] = (0, 1)  # seeds of the two models of each pair (Figs. 10, 11)
    target: int | str = 1  # targeted-FGSM class (the paper: 1), or "random" (a random class != label)
    n_points: int = 150  # points per model / group in every t-SNE
    perplexity: float = 30.0  # t-SNE perplexity
    knn_k: int = 10  # neighbours of the kNN measurements
    n_eval: int = 300  # in- and out-of-distribution test points for the AUROCs
    n_calibration: int = 100  # held-out in-distribution test points calibrating the DkNN
    dknn_k: int = 75  # DkNN neighbours per layer (authors' code: 75)
    dknn_train: int = 10000  # training points indexed by the DkNN
    hidden_layer: str = "conv1"  # Fig. 22: the first hidden layer
    hidden_attack: str = "fgsm"  # fgsm or bim (Fig. 22)
    hidden_eps: float = 0.1  # L-inf budget of the Fig. 22 attack
    bim_alpha: float = 0.01  # BIM step
    bim_steps: int = 20  # BIM steps
    # Table 2 (App. E), see snnl.experiments.robustness
    pgd_eps: float = 0.2  # PGD budget (Madry et al., MNIST: 0.3)
    pgd_alpha: float = 0.05  # PGD step (Madry: 0.01)
    pgd_steps: int = 4  # PGD steps (Madry: 40)
    adv_train_steps: int = 150  # adversarial training steps
    adv_eps_ramp: int = 0  # steps over which eps (and the PGD step) grow linearly to pgd_eps (0: none)
    adv_warmup_steps: int = 0  # first steps trained on a cheaper PGD (fewer iterations)
    adv_warmup_pgd_steps: int = 10  # PGD iterations during the warm-up
    adv_warmup_alpha: float = 0.04  # PGD step during the warm-up
    adv_batch_size: int = 64  # adversarial training batch (Madry: 50)
    adv_lr: float = 2e-3  # adversarial training Adam learning rate (Madry: 1e-4)
    table2_batch: int = 128  # test points per entanglement measurement (the paper: 128)
    table2_batches: int = 5  # disjoint batches measured (mean and spread reported)
    table2_temperature: float = 100.0  # the fixed T of the "SNNL at T" column (paper's value illegible)
    robust_eval: int = 300  # test points for clean / PGD accuracy of both models
    seed: int = 0  # seed of data subsets, attacks and t-SNE
    device: str = "auto"  # auto, cpu, cuda
    progress: bool = False  # tqdm bars while training

    def __post_init__(self):
        self.seeds = tuple(self.seeds)
        if len(self.seeds) != 2 or self.seeds[0] == self.seeds[1]:
            raise ValueError(f"seeds must be two different integers, got {self.seeds}")
        if self.target != "random" and (isinstance(self.target, bool) or not isinstance(self.target, int)):
            raise ValueError(f"target must be a class index or 'random', got {self.target!r}")
        if self.hidden_attack not in ("fgsm", "bim"):
            raise ValueError(f"hidden_attack must be fgsm or bim, got {self.hidden_attack!r}")
        for name in ("n_points", "n_eval", "n_calibration", "knn_k", "train_steps", "adv_train_steps", "table2_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_points <= self.knn_k:
            raise ValueError(f"n_points ({self.n_points}) must exceed knn_k ({self.knn_k})")


PROFILES = {
    "small": {},
    "paper": dict(dataset="mnist", size=None, ood_dataset="notmnist", hidden_dataset="fashion-mnist",
                  train_steps=14000, batch_size=256, lr=1e-4, model_experiment="table1",
                  checkpoint_root="runs", second_seed_steps=5000, second_seed_experiment="dknn_calibration_source",
                  second_seed_checkpoint="cal_{dataset}_snnl_a{alpha:g}_s{seed}_{steps}", n_points=1000, n_eval=2000, n_calibration=1000,
                  pgd_eps=0.3, pgd_alpha=0.01, pgd_steps=40, adv_train_steps=2500, adv_warmup_steps=2000,
                  adv_eps_ramp=1000,
                  adv_batch_size=64, adv_lr=1e-3, table2_batches=10, robust_eval=1000),
}


def config_for(profile: str = "small", **overrides) -> GeometryConfig:
    """The profile's configuration, with ``overrides`` (unknown names: a ValueError)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    unknown = set(overrides) - set(GeometryConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown GeometryConfig field(s): {', '.join(sorted(unknown))}")
    return GeometryConfig(**{**PROFILES[profile], "profile": profile, **overrides})


# ---- data and models -----------------------------------------------------------------------
def load(cfg: GeometryConfig, name: str, like: Dataset | None = None) -> Dataset:
    """``name`` (a dataset, or shuffled/noise made from ``like``'s test split), shaped like ``like``."""
    if name in SYNTHETIC_OOD:
        if like is None:
            raise ValueError(f"{name!r} OOD data is made from an in-distribution dataset")
        g = torch.Generator().manual_seed(cfg.seed + 7)
        x = like.x_test
        if name == "noise":
            x = torch.rand(x.shape, generator=g)
        else:
            flat = x.flatten(1)
            idx = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
            x = flat.gather(1, idx).reshape(x.shape)
        return Dataset(name, None, None, x, torch.zeros(len(x), dtype=torch.long), ["ood"], f"{name} {like.name}")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS + SYNTHETIC_OOD)}")
    size, channels = cfg.size, None
    if like is not None:
        channels, size = like.shape[0], like.shape[1]
    return load_dataset(name, n_train=cfg.n_train, seed=cfg.seed, size=size, channels=channels)


def model_config(cfg: GeometryConfig, dataset: str, alpha: float, seed: int) -> TrainConfig:
    """The TrainConfig of a model (the paper profile: Table 1's, so its runs are reused; the
    second seed's steps and experiment name may differ: ``second_seed_*``)."""
    second = seed != cfg.seeds[0]
    steps = cfg.second_seed_steps if (second and cfg.second_seed_steps) else cfg.train_steps
    experiment = cfg.second_seed_experiment if (second and cfg.second_seed_experiment) else cfg.model_experiment
    return TrainConfig(dataset=dataset, model="cnn", alpha=float(alpha), steps=steps, batch_size=cfg.batch_size,
                       lr=cfg.lr, n_train=cfg.n_train, size=cfg.size, seed=seed, device=cfg.device, profile=cfg.profile,
                       experiment=experiment)


def checkpoint_dir(cfg: GeometryConfig, tc: TrainConfig, tag: str | None = None) -> Path | None:
    """``<checkpoint_root>/t1_<data>_a<alpha>_s<seed>`` for Table 1 configs (the paper profile
    reuses those runs), ``second_seed_checkpoint`` filled in for the second seed's models when
    set, ``<tag or experiment>_<data>_a<alpha>_s<seed>`` otherwise."""
    if cfg.checkpoint_root is None:
        return None
    if tag is None and tc.seed != cfg.seeds[0] and cfg.second_seed_checkpoint:
        return Path(cfg.checkpoint_root) / cfg.second_seed_checkpoint.format(
            dataset=tc.dataset, short=SHORT.get(tc.dataset, tc.dataset), alpha=tc.alpha, seed=tc.seed, steps=tc.steps)
    tag = tag or ("t1" if tc.experiment == "table1" else tc.experiment)
    return Path(cfg.checkpoint_root) / f"{tag}_{SHORT.get(tc.dataset, tc.dataset)}_a{tc.alpha:g}_s{tc.seed}"


def trained_model(cfg: GeometryConfig, data: Dataset, tc: TrainConfig | float, seed: int | None = None,
                  cache: dict | None = None, models_out=None, transform=None, tag: str | None = None) -> nn.Module:
    """A trained CNN for ``tc`` (a TrainConfig, or an alpha: Eq. 3 with it, 0 = cross-entropy, via
    :func:`model_config`): from ``cache``, from a finished checkpoint under ``cfg.checkpoint_root``,
    else trained now (its training record under ``models_out``)."""
    if not isinstance(tc, TrainConfig):
        tc = model_config(cfg, data.name, tc, cfg.seeds[0] if seed is None else seed)
    key = repr((asdict(tc), tag))
    if cache is not None and key in cache:
        return cache[key]
    folder = checkpoint_dir(cfg, tc, tag)
    out = models_out
    if folder is not None:
        await_checkpoint(folder, tc.steps, cfg.wait)
        if checkpoint_step(folder) == tc.steps:
            out = None  # already trained: no second record
        if transform is not None and hasattr(transform, "step"):
            transform.step = checkpoint_step(folder) or 0  # a resumed schedule goes on where it stopped
    model = train(tc, data=data, out_dir=out, checkpoint_dir=folder, progress=cfg.progress,
                  transform=transform).model.eval()
    if cache is not None:
        cache[key] = model
    return model


# ---- measurements ------------------------------------------------------------------------
def tsne(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of the rows of ``x``."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    perplexity = min(perplexity, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 10, groups: np.ndarray | None = None) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote; with ``groups``, a point's
    neighbours of its own group (e.g. its adversarial twin) are left out too."""
    x, labels = np.asarray(x, dtype=np.float32).reshape(len(x), -1), np.asarray(labels)
    extra = 1 if groups is None else int(np.bincount(groups).max())
    idx = NearestNeighbors(n_neighbors=min(k + extra, len(x))).fit(x).kneighbors(x, return_distance=False)
    keep = idx != np.arange(len(x))[:, None] if groups is None else groups[idx] != groups[:, None]
    votes = [labels[row[m][:k]] for row, m in zip(idx, keep)]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == labels).mean())


# ---- results records: one per experiment --------------------------------------------------
def _run(cfg: GeometryConfig, experiment: str, dataset: str) -> Run:
    seed_everything(cfg.seed)
    return Run(experiment, cfg.profile, dataset, cfg.seed, asdict(cfg), device_name(resolve_device(cfg.device)))


def _finish(run: Run, results: dict, arrays: tuple[str, ...], out_dir) -> dict:
    """Write ``run``'s record: per model / pair of ``results``, its numbers (the float values) as
    metrics and its ``arrays`` (floats rounded to 2 decimals) as history. Returns the record."""
    metrics = {name: {k: v for k, v in r.items() if isinstance(v, float)} for name, r in results.items()}
    history = {name: {k: np.round(r[k], 2) if r[k].dtype.kind == "f" else r[k] for k in arrays}
               for name, r in results.items()}
    return run.finish(metrics, out_dir, history=history)


def _models_out(out_dir):
    return None if out_dir is None else Path(out_dir) / "models"


# ---- figures ---------------------------------------------------------------------------------
def plot_embedding(ax, embedding, group, names, colors, title: str = ""):
    """Scatter a 2-D embedding, one colour per group value 0, 1, ... (``names``, ``colors``)."""
    embedding, group = np.asarray(embedding), np.asarray(group)
    for g, (name, c) in enumerate(zip(names, colors)):
        sel = group == g
        ax.scatter(embedding[sel, 0], embedding[sel, 1], s=4, color=c, alpha=0.6, linewidths=0, label=name)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=8, loc="best")
    return ax


def plot_geometry(kind: str, results: dict, axes) -> None:
    """One panel per model / pair of a run's results (or a record's history): ``kind`` is
    gradients (Figs. 10, 11; colour = model), ood (Figs. 12, 21) or hidden (Fig. 22)."""
    for ax, (name, r) in zip(np.ravel(axes), results.items()):
        if kind == "gradients":
            plot_embedding(ax, r["embedding"], r["model"], ["model A", "model B"],
                           {"baseline": ["tab:green", "tab:blue"], "entangled": ["tab:red", "tab:orange"]}
                           .get(name, ["tab:green", "tab:red"]), f"{name} pair")
        elif kind == "ood":
            plot_embedding(ax, r["embedding"], r["is_ood"], ["in-distribution", "out-of-distribution"],
                           ["tab:blue", "black"], f"{name}: logits")
        else:
            plot_embedding(ax, r["embedding"], r["is_adversarial"], ["real", "adversarial"],
                           ["tab:blue", "tab:red"], f"{name}: first hidden layer")


def markdown_table(rows: list[dict]) -> str:
    """A list of dicts (same keys) as a Markdown table; floats with 3 decimals, columns of numbers
    right-aligned."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))
    number = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    lines = ["| " + " | ".join(keys) + " |", "|" + "".join("---:|" if all(number(r[k]) for r in rows) else "---|"
                                                           for k in keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])


def run_all(cfg: GeometryConfig, out_dir=None, parts=("gradients", "ood", "hidden", "table2")) -> dict:
    """Every experiment of this section (models shared through one cache)."""
    from snnl.experiments.adversarial_gradients import run_adversarial_gradients
    from snnl.experiments.hidden_adversarial import run_hidden_adversarial
    from snnl.experiments.ood import run_ood
    from snnl.experiments.robustness import run_table2

    runners = {"gradients": run_adversarial_gradients, "ood": run_ood, "hidden": run_hidden_adversarial,
               "table2": run_table2}
    unknown = set(parts) - set(runners)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(runners)}")
    cache: dict = {}
    return {p: runners[p](cfg, out_dir, cache) for p in parts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.geometry", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", choices=tuple(PROFILES))
    p.add_argument("--parts", nargs="+", default=["gradients", "ood", "hidden", "table2"])
    p.add_argument("--out", default=None, help="folder for the results records")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override config fields (JSON values: n_points=500 seeds=[0,1] target=random)")
    args = p.parse_args(argv)
    over = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            over[key] = json.loads(value)
        except json.JSONDecodeError:
            over[key] = value  # a plain string, e.g. target=random
    try:
        cfg = config_for(args.profile, **over)
    except ValueError as e:
        p.error(str(e))
    for part, res in run_all(cfg, args.out, args.parts).items():
        print(part, res["record"]["metrics"], flush=True)
    return 0


# The experiments' own modules import the configuration and models above, so they are imported
# when one of their names is first asked of this module (PEP 562), not before.
_EXPERIMENTS = {
    "snnl.experiments.adversarial_gradients": ("adversarial_gradients", "gradient_alignment",
                                               "run_adversarial_gradients"),
    "snnl.experiments.ood": ("ood_scores", "run_ood"),
    "snnl.experiments.hidden_adversarial": ("real_vs_adversarial", "run_hidden_adversarial"),
}
_HOME = {name: module for module, names in _EXPERIMENTS.items() for name in names}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


if __name__ == "__main__":
    raise SystemExit(main())
