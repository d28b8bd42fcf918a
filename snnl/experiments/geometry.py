"""Entangled representations under attack and out of distribution (paper Section 5, Apps. G, H).

* Figs. 10, 11 (Section 5.2): t-SNE of the gradients a targeted FGSM attack follows (their sign,
  as in the authors' code) on two models. Two cross-entropy models give class clusters aligned
  across the models; two entangled models do not. Numbers added here: the mean cosine between
  the two models' gradients of the same input, and kNN accuracies in the joint embedding.
* Figs. 12, 21 (Section 5.3, App. G): t-SNE of the logits of in-distribution and
  out-of-distribution test data; the entangled model puts the OOD data apart. Number added: the
  AUROC of Deep k-NN credibility (and of the softmax maximum) for telling in- from OOD inputs.
* Fig. 22 (App. H): t-SNE of the first hidden layer on real and adversarial test data. Number
  added: a kNN classifier's accuracy at telling real from adversarial points in that layer.
* Table 2 (App. E) lives in :mod:`snnl.experiments.robustness`; ``python -m
  snnl.experiments.geometry`` runs all four and writes one results record each.

Every ``run_*`` function returns plain data (numpy arrays and floats) and, given ``out_dir``,
writes a record with :class:`snnl.results.Run` (embeddings rounded into the record's history).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.manifold import TSNE
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from snnl.attacks import BIM, FGSM
from snnl.data import DATASETS, Dataset, load_dataset
from snnl.dknn import DkNN, extract_features
from snnl.models import logits_of
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


def checkpoint_step(folder) -> int | None:
    """The step saved in ``folder/checkpoint.pt`` (None when there is none)."""
    path = Path(folder) / "checkpoint.pt"
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def await_checkpoint(folder, steps: int, wait: float, fresh: float = 3600.0) -> None:
    """Wait (up to ``wait`` s) until ``folder`` holds a finished checkpoint (another process
    training it); then a RuntimeError. With ``wait=0``, return at once when there is no
    checkpoint or an unfinished one untouched for ``fresh`` s (train() then trains / resumes it)."""
    path, deadline = Path(folder) / "checkpoint.pt", time.time() + wait
    while True:
        step = checkpoint_step(folder)
        if step is not None and step >= steps:
            return
        if time.time() >= deadline:
            if wait == 0 and (step is None or time.time() - path.stat().st_mtime > fresh):
                return
            raise RuntimeError(f"{path}: {'missing' if step is None else f'at step {step}/{steps}'} "
                               f"after waiting {wait:.0f} s; another run is still training it")
        time.sleep(min(60.0, max(1.0, deadline - time.time())))


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


def ood_scores(model: nn.Module, data: Dataset, x_in: torch.Tensor, x_out: torch.Tensor,
               x_cal: torch.Tensor, y_cal: torch.Tensor, k: int = 75, n_fit: int = 10000, seed: int = 0) -> dict:
    """DkNN credibility and softmax maximum of in- and out-of-distribution inputs, and their AUROCs
    (positive class: in-distribution). The DkNN indexes every layer of ``n_fit`` training points
    and is calibrated on (x_cal, y_cal), held out from training and evaluation."""
    g = torch.Generator().manual_seed(seed)
    fit = torch.randperm(len(data.x_train), generator=g)[:n_fit]
    dknn = DkNN(k=min(k, len(fit))).fit(extract_features(model, data.x_train[fit]), data.y_train[fit])
    dknn.calibrate(extract_features(model, x_cal), y_cal)
    feats = [extract_features(model, x) for x in (x_in, x_out)]
    cred = [dknn.predict(f).credibility for f in feats]
    soft = [F.softmax(torch.from_numpy(f[-1]), 1).max(1).values.numpy() for f in feats]
    is_in = np.r_[np.ones(len(x_in)), np.zeros(len(x_out))]
    return {"credibility_in": cred[0], "credibility_out": cred[1], "softmax_in": soft[0], "softmax_out": soft[1],
            "logits_in": feats[0][-1], "logits_out": feats[1][-1],
            "auroc_credibility": float(roc_auc_score(is_in, np.r_[cred[0], cred[1]])),
            "auroc_softmax": float(roc_auc_score(is_in, np.r_[soft[0], soft[1]]))}


def real_vs_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack, layer: str = "conv1",
                        k: int = 10, seed: int = 0, perplexity: float = 30.0) -> dict:
    """Fig. 22 for one model: ``layer``'s activations on real and adversarial inputs, their t-SNE,
    and kNN accuracies at telling them apart, in the layer and in the t-SNE embedding (leave-one-out,
    a point's adversarial twin never among its neighbours)."""
    adv = attack(x, y)
    real_f, adv_f = (extract_features(model, z, layers=[layer, "logits"]) for z in (x, adv))
    feats = np.concatenate([real_f[0], adv_f[0]])
    is_adv = np.repeat([0, 1], len(x))
    groups = np.r_[np.arange(len(x)), np.arange(len(x))]
    emb = tsne(feats, seed, perplexity)
    acc = [float((f[1].argmax(1) == y.numpy()).mean()) for f in (real_f, adv_f)]
    return {"embedding": emb, "is_adversarial": is_adv, "knn_accuracy_layer": knn_accuracy(feats, is_adv, k, groups),
            "knn_accuracy_tsne": knn_accuracy(emb, is_adv, k, groups), "clean_accuracy": acc[0], "adversarial_accuracy": acc[1]}


# ---- the experiments: plain data out, one results record each ------------------------------
def _run(cfg: GeometryConfig, experiment: str, dataset: str) -> Run:
    seed_everything(cfg.seed)
    return Run(experiment, cfg.profile, dataset, cfg.seed, asdict(cfg), device_name(resolve_device(cfg.device)))


def _split(result: dict, arrays: tuple[str, ...]) -> tuple[dict, dict]:
    """(numbers, rounded arrays) of one measurement, for a record's metrics and history."""
    scal = {k: v for k, v in result.items() if isinstance(v, float)}
    hist = {k: np.round(result[k], 2) if result[k].dtype.kind == "f" else result[k] for k in arrays}
    return scal, hist


def _models_out(out_dir):
    return None if out_dir is None else Path(out_dir) / "models"


def run_adversarial_gradients(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Figs. 10, 11: gradient alignment of two baseline models, two entangled models and one of
    each (seeds ``cfg.seeds``). Returns ``{"pairs": {name: gradient_alignment(...)}, "record"}``."""
    run = _run(cfg, "adversarial_gradients", cfg.dataset)
    data = load(cfg, cfg.dataset)
    m = {(a, s): trained_model(cfg, data, a, s, cache, _models_out(out_dir)) for a in (0.0, cfg.alpha) for s in cfg.seeds}
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
    split = {k: _split(r, ("embedding", "model", "label")) for k, r in res.items()}
    rec = run.finish({k: s[0] for k, s in split.items()}, out_dir, history={k: s[1] for k, s in split.items()})
    return {"pairs": res, "record": rec}


def run_ood(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Figs. 12, 21: baseline and entangled models (seed ``cfg.seeds[0]``) on in-distribution and
    OOD test data. Returns ``{"models": {"baseline"|"entangled": {... ood_scores ..., embedding,
    is_ood, label}}, "record"}``; ``label`` is the in-distribution class, -1 for OOD points."""
    run = _run(cfg, "ood", f"{cfg.dataset}+{cfg.ood_dataset}")
    data = load(cfg, cfg.dataset)
    ood = load(cfg, cfg.ood_dataset, like=data)
    n_in = cfg.n_calibration + cfg.n_eval
    if n_in > len(data.x_test):
        raise ValueError(f"n_calibration + n_eval = {n_in} > {len(data.x_test)} {data.name} test points")
    g = torch.Generator().manual_seed(cfg.seed)
    perm, perm_out = torch.randperm(len(data.x_test), generator=g), torch.randperm(len(ood.x_test), generator=g)
    cal, ev = perm[:cfg.n_calibration], perm[cfg.n_calibration:n_in]
    x_out = ood.x_test[perm_out[:cfg.n_eval]]
    out = {}
    for name, a in (("baseline", 0.0), ("entangled", cfg.alpha)):
        model = trained_model(cfg, data, a, None, cache, _models_out(out_dir))
        r = ood_scores(model, data, data.x_test[ev], x_out, data.x_test[cal], data.y_test[cal],
                       cfg.dknn_k, cfg.dknn_train, cfg.seed)
        n = min(cfg.n_points, cfg.n_eval, len(x_out))
        r["embedding"] = tsne(np.concatenate([r["logits_in"][:n], r["logits_out"][:n]]), cfg.seed, cfg.perplexity)
        r["is_ood"] = np.repeat([0, 1], n)
        r["label"] = np.r_[data.y_test[ev][:n].numpy(), -np.ones(n, dtype=np.int64)]
        r["accuracy_in"] = float((r["logits_in"].argmax(1) == data.y_test[ev].numpy()).mean())
        for key in ("credibility", "softmax"):
            r[f"mean_{key}_in"], r[f"mean_{key}_out"] = float(r[f"{key}_in"].mean()), float(r[f"{key}_out"].mean())
        out[name] = r
    split = {k: _split(r, ("embedding", "is_ood", "label")) for k, r in out.items()}
    rec = run.finish({k: s[0] for k, s in split.items()}, out_dir, history={k: s[1] for k, s in split.items()})
    return {"models": out, "record": rec}


def run_hidden_adversarial(cfg: GeometryConfig, out_dir=None, cache: dict | None = None) -> dict:
    """Fig. 22: first hidden layer on real vs adversarial test data (``cfg.hidden_attack``),
    baseline and entangled models. Returns ``{"models": {name: real_vs_adversarial(...)}, "record"}``."""
    run = _run(cfg, "hidden_adversarial", cfg.hidden_dataset)
    data = load(cfg, cfg.hidden_dataset)
    idx = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_points]
    x, y = data.x_test[idx], data.y_test[idx]
    out = {}
    for name, a in (("baseline", 0.0), ("entangled", cfg.alpha)):
        model = trained_model(cfg, data, a, None, cache, _models_out(out_dir))
        if cfg.hidden_attack == "fgsm":
            attack = FGSM(model, cfg.hidden_eps)
        elif cfg.hidden_attack == "bim":
            attack = BIM(model, cfg.hidden_eps, cfg.bim_alpha, cfg.bim_steps)
        else:
            raise ValueError(f"unknown attack {cfg.hidden_attack!r}; choose fgsm or bim")
        out[name] = real_vs_adversarial(model, x, y, attack, cfg.hidden_layer, cfg.knn_k, cfg.seed, cfg.perplexity)
    split = {k: _split(r, ("embedding", "is_adversarial")) for k, r in out.items()}
    rec = run.finish({k: s[0] for k, s in split.items()}, out_dir, history={k: s[1] for k, s in split.items()})
    return {"models": out, "record": rec}


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
    """A list of dicts (same keys) as a Markdown table; floats with 3 decimals."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])


def run_all(cfg: GeometryConfig, out_dir=None, parts=("gradients", "ood", "hidden", "table2")) -> dict:
    """Every experiment of this section (models shared through one cache)."""
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


if __name__ == "__main__":
    raise SystemExit(main())
