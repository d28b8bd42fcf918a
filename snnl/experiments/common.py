"""What every paper item's module shares: the profile mechanism, the paper's training recipe,
record finishing, the t-SNE / kNN measurements and Markdown tables.

* :func:`config_from_profile` -- a config dataclass from a named profile (``small``, ``paper``)
  and overrides, the one way every item's ``*_config`` / ``config_for`` builds its config;
* :data:`PAPER_RECIPE` -- the paper's CNN training (Table 1: 14,000 steps of Adam, batch 256,
  learning rate 1e-4), written once and used by every item that trains that CNN;
* :func:`start_run`, :func:`finish_record` -- a results record (:class:`snnl.results.Run`)
  opened with a seeded run and written with a model's floats as metrics and its arrays as history;
* :func:`tsne`, :func:`knn_accuracy`, :func:`markdown_table`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from snnl.results import Run, device_name, resolve_device, seed_everything

# the paper's CNN training (Section 4, Table 1): Adam, batch 256, 14,000 steps, learning rate 1e-4
PAPER_RECIPE = dict(steps=14000, batch_size=256, lr=1e-4)


def config_from_profile(cls, profiles: dict, profile: str = "small", **overrides):
    """``cls(**profiles[profile], profile=profile, **overrides)``: unknown profile or field names
    give a one-line ValueError. ``profiles`` maps each profile name to its field values."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)}")
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{**profiles[profile], "profile": profile, **overrides})


# ---- records ----------------------------------------------------------------------------------
def start_run(cfg, experiment: str, dataset: str) -> Run:
    """A seeded :class:`~snnl.results.Run` of ``experiment`` for the config dataclass ``cfg``
    (fields ``profile``, ``seed``, ``device``)."""
    seed_everything(cfg.seed)
    return Run(experiment, cfg.profile, dataset, cfg.seed, asdict(cfg), device_name(resolve_device(cfg.device)))


def finish_record(run: Run, results: dict, arrays: tuple[str, ...], out_dir) -> dict:
    """Write ``run``'s record: per model / pair of ``results``, its numbers (the float values) as
    metrics and its ``arrays`` (floats rounded to 2 decimals) as history. Returns the record."""
    metrics = {name: {k: v for k, v in r.items() if isinstance(v, float)} for name, r in results.items()}
    history = {name: {k: np.round(r[k], 2) if r[k].dtype.kind == "f" else r[k] for k in arrays}
               for name, r in results.items()}
    return run.finish(metrics, out_dir, history=history)


def models_out(out_dir) -> Path | None:
    """Where the training records of an experiment's models go: ``<out_dir>/models``."""
    return None if out_dir is None else Path(out_dir) / "models"


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
    """A list of dicts (same keys) as a Markdown table; floats with 3 decimals."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])
