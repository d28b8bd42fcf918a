"""The configuration, data and trained models shared by the Section 5 experiments (paper
Section 5, Apps. E, G, H): :mod:`snnl.experiments.ood.gradients` (Figs. 10, 11),
:mod:`snnl.experiments.ood.outliers` (Figs. 12, 21), :mod:`snnl.experiments.ood.hidden` (Fig. 22)
and :mod:`snnl.experiments.ood.robustness` (Table 2). :mod:`snnl.experiments.ood.geometry` runs them all.

:class:`GeometryConfig` and its profiles (:data:`PROFILES`, :func:`config_for`), the data
(:func:`load`: a dataset, or shuffled / noise images made from one), the models' TrainConfigs
(:func:`model_config`), their checkpoint folders (:func:`checkpoint_dir`; the paper profile
reuses Table 1's models) and :func:`trained_model`; the t-SNE figures (:func:`plot_geometry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from snnl.data import DATASETS, Dataset, load_dataset
from snnl.experiments.common.checkpoints import SHORT, await_checkpoint, checkpoint_step, model_checkpoint
from snnl.experiments.common import PAPER_RECIPE, config_from_profile, markdown_table
from snnl.train import TrainConfig, train

SYNTHETIC_OOD = ("shuffled", "noise")  # pixel-permuted in-distribution test images; uniform noise


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
    checkpoint_root: str | None = None  # folder of model checkpoints (checkpoint_dir; None: none)
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
    # Table 2 (App. E), see snnl.experiments.ood.robustness
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
                  train_steps=PAPER_RECIPE["steps"], batch_size=PAPER_RECIPE["batch_size"], lr=PAPER_RECIPE["lr"],
                  model_experiment="table1",
                  checkpoint_root="runs", second_seed_steps=5000, second_seed_experiment="dknn_calibration_source",
                  second_seed_checkpoint="cal_{dataset}_snnl_a{alpha:g}_s{seed}_{steps}", n_points=1000, n_eval=2000, n_calibration=1000,
                  pgd_eps=0.3, pgd_alpha=0.01, pgd_steps=40, adv_train_steps=2500, adv_warmup_steps=2000,
                  adv_eps_ramp=1000,
                  adv_batch_size=64, adv_lr=1e-3, table2_batches=10, robust_eval=1000),
}


def config_for(profile: str = "small", **overrides) -> GeometryConfig:
    """The profile's configuration, with ``overrides`` (unknown names: a ValueError)."""
    return config_from_profile(GeometryConfig, PROFILES, profile, **overrides)


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
    """Table 1's folder for Table 1 configs (the paper profile reuses those runs:
    :func:`snnl.experiments.common.checkpoints.model_checkpoint`, ``table1_<data>_a<alpha>_s<seed>``, or an
    existing ``t1_<short>_a<alpha>_s<seed>``), ``second_seed_checkpoint`` filled in for the second
    seed's models when set, ``<tag or experiment>_<short data>_a<alpha>_s<seed>`` otherwise."""
    if cfg.checkpoint_root is None:
        return None
    if tag is None and tc.seed != cfg.seeds[0] and cfg.second_seed_checkpoint:
        return Path(cfg.checkpoint_root) / cfg.second_seed_checkpoint.format(
            dataset=tc.dataset, short=SHORT.get(tc.dataset, tc.dataset), alpha=tc.alpha, seed=tc.seed, steps=tc.steps)
    if tag is None and tc.experiment == "table1":
        return model_checkpoint(cfg.checkpoint_root, "table1", tc.dataset, tc.alpha, tc.seed)
    tag = tag or tc.experiment
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


def table_record(record: dict, row: str, keys: tuple[str, ...]) -> str:
    """A Section 5 item's numbers: a Markdown table, one row (named ``row``) per model / pair of
    ``record`` (this run's, or a committed one), the columns ``keys`` of its metrics."""
    return markdown_table([{row: k, **{q: m[q] for q in keys}} for k, m in record["metrics"].items()])


def plot_record(kind: str, record: dict, figsize: tuple, axes=None):
    """:func:`plot_geometry` of ``record``'s history, on ``axes`` or a new row of one panel per
    model / pair. Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(record["history"]), figsize=figsize)
    plot_geometry(kind, record["history"], axes)
    return np.ravel(axes)[0].figure
