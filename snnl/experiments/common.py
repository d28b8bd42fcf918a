"""What every paper item's module shares: the profile mechanism, the paper's training recipe,
record finishing, the t-SNE / kNN measurements and Markdown tables.

* :func:`profile_values`, :func:`config_from_profile` -- a named profile's settings (``small``,
  ``paper``), and a config dataclass built from them and overrides: the one way every item's
  ``config_for`` / ``make_config`` / ``get_profile`` / ``table1_config`` picks its profile;
* :data:`PAPER_RECIPE` -- the paper's CNN training (Table 1: 14,000 steps of Adam, batch 256,
  learning rate 1e-4), written once and used by every item that trains that CNN;
* :func:`start_run`, :func:`finish_run`, :func:`finish_record` -- a results record
  (:class:`snnl.results.Run`) opened with a seeded run; written by :func:`finish_run`, the one
  finisher of every experiment (metrics and history as given), or by :func:`finish_record` (per
  model, its floats as metrics and its arrays as history);
* :func:`load_or_substitute` -- a paper dataset, or its stand-in (:data:`SUBSTITUTES`) when it is
  missing; :func:`find_record` -- a run a sweep already has; :func:`train_recorded` --
  :func:`snnl.train.train` with entries added to its record's config;
* :func:`tsne`, :func:`knn_accuracy`, :func:`markdown_table`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from snnl.data import Dataset, DatasetError, load_dataset
from snnl.results import Run, device_name, load_records, resolve_device, seed_everything
from snnl.train import TrainConfig, train

# the paper's CNN training (Section 4, Table 1: Adam, batch 256, 14,000 steps, learning rate 1e-4), as
# snnl.train.TrainConfig's defaults hold it
PAPER_RECIPE = dict(steps=TrainConfig.steps, batch_size=TrainConfig.batch_size, lr=TrainConfig.lr)


def profile_values(profiles: dict, profile: str):
    """``profiles[profile]``; an unknown profile gives a one-line ValueError naming the known ones."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    return profiles[profile]


def config_from_profile(cls, profiles: dict, profile: str = "small", **overrides):
    """``cls(**profiles[profile], profile=profile, **overrides)``: unknown profile or field names
    give a one-line ValueError. ``profiles`` maps each profile name to its field values."""
    values = profile_values(profiles, profile)
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{**values, "profile": profile, **overrides})


# ---- records ----------------------------------------------------------------------------------
def start_run(cfg, experiment: str, dataset: str) -> Run:
    """A seeded :class:`~snnl.results.Run` of ``experiment`` for the config dataclass ``cfg``
    (fields ``profile``, ``seed``, ``device``)."""
    seed_everything(cfg.seed)
    return Run(experiment, cfg.profile, dataset, cfg.seed, asdict(cfg), device_name(resolve_device(cfg.device)))


def finish_run(run: Run, metrics: dict, out_dir, history: dict | None = None, *, config: dict | None = None,
               device: str | None = None) -> dict:
    """The one finisher of every experiment's record: ``run``'s record with ``metrics`` and
    ``history`` as given (``config`` / ``device``, when given, replace the run's), written under
    ``out_dir`` when given (:meth:`snnl.results.Run.finish`). Returns the record."""
    if config is not None:
        run.config = config
    if device is not None:
        run.device = device
    return run.finish(metrics, out_dir, history=history)


def finish_record(run: Run, results: dict, arrays: tuple[str, ...], out_dir) -> dict:
    """Write ``run``'s record (:func:`finish_run`): per model / pair of ``results``, its numbers
    (the float values) as metrics and its ``arrays`` (floats rounded to 2 decimals) as history.
    Returns the record."""
    metrics = {name: {k: v for k, v in r.items() if isinstance(v, float)} for name, r in results.items()}
    history = {name: {k: np.round(r[k], 2) if r[k].dtype.kind == "f" else r[k] for k in arrays}
               for name, r in results.items()}
    return finish_run(run, metrics, out_dir, history)


def models_out(out_dir) -> Path | None:
    """Where the training records of an experiment's models go: ``<out_dir>/models``."""
    return None if out_dir is None else Path(out_dir) / "models"


# ---- data stand-ins, runs a sweep already has, training with a record ------------------------------
# Datasets of the paper that may be unavailable, and what stands in for them (size/channels make
# the substitute the same shape as the original).
SUBSTITUTES = {
    "cifar10": dict(dataset="fashion-mnist", size=32, channels=3,
                    note="Fashion-MNIST padded to 32x32 and replicated to 3 channels, a substitute for CIFAR-10"),
    "svhn": dict(dataset="fashion-mnist", size=None, channels=None,
                 note="Fashion-MNIST, a substitute for SVHN"),
}

def load_or_substitute(name: str, *, size: int | None = None, channels: int | None = None,
                       n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                       substitute: bool = True) -> tuple[Dataset, str | None, str]:
    """Load ``name``; if it is one of :data:`SUBSTITUTES` and cannot be loaded, load its stand-in.

    Returns ``(dataset, substitute_for, note)``: ``substitute_for`` is the dataset the data stands
    in for and ``note`` one line describing the substitute (None and "" when the real one loaded).
    """
    try:
        ds = load_dataset(name, n_train=n_train, n_test=n_test, size=size, channels=channels, seed=seed)
        return ds, None, ""
    except DatasetError as err:
        if not substitute or ds_key(name) not in SUBSTITUTES:
            raise
        sub = SUBSTITUTES[ds_key(name)]
        warnings.warn(f"{err}; using {sub['note']}", stacklevel=2)
        ds = load_dataset(sub["dataset"], n_train=n_train, n_test=n_test, size=sub["size"] or size,
                          channels=sub["channels"] or channels, seed=seed)
        return ds, ds_key(name), sub["note"]


def ds_key(name: str) -> str:
    return str(name).lower().replace("_", "-").replace("cifar-10", "cifar10")


def config_key(config: dict) -> str:
    """A record's config as canonical text, the device aside: equal for the same run on any device."""
    return json.dumps({k: v for k, v in json.loads(json.dumps(config, default=str)).items() if k != "device"},
                      sort_keys=True)


def find_record(out_dir, experiment: str, config: dict) -> dict | None:
    """The newest record of ``experiment`` under ``out_dir`` whose config equals ``config``
    (the device aside), or None: lets a sweep skip runs it already has."""
    if out_dir is None:
        return None
    want = config_key(config)
    found = [r for r in load_records(out_dir, experiment) if config_key(r["config"]) == want]
    return found[-1] if found else None


def train_recorded(config: TrainConfig, data: Dataset, out_dir=None, extra: dict | None = None, **kwargs):
    """:func:`snnl.train.train` with ``extra`` entries (e.g. ``substitute_for``) added to the
    config of its results record; the record is written under ``out_dir`` (if given)."""
    run = Run(config.experiment, config.profile, data.name, config.seed, {**asdict(config), **(extra or {})})
    res = train(config, data, **kwargs)
    res.record = finish_run(run, res.metrics, out_dir, res.history, device=res.record["device"])
    return res


# ---- measurements ------------------------------------------------------------------------------
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


# ---- tables ------------------------------------------------------------------------------------
def markdown_table(rows: list[dict]) -> str:
    """A list of dicts (same keys) as a Markdown table; floats with 3 decimals (4 significant digits
    from 1e5 on, e.g. a loss that blew up: 1.292e+09), columns of numbers right-aligned."""
    keys = list(rows[0])
    cell = lambda v: (f"{v:.3f}" if abs(v) < 1e5 else f"{v:.4g}") if isinstance(v, float) else \
        ("-" if v is None else str(v))
    number = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    lines = ["| " + " | ".join(keys) + " |", "|" + "".join("---:|" if all(number(r[k]) for r in rows) else "---|"
                                                           for k in keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])
