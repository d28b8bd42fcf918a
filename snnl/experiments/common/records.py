"""Results records shared by the paper items: :func:`start_run`, :func:`finish_run`,
:func:`finish_record` -- a results record (:class:`snnl.results.Run`) opened with a seeded run;
written by :func:`finish_run`, the one finisher of every experiment (metrics and history as
given), or by :func:`finish_record` (per model, its floats as metrics and its arrays as history);
:func:`find_record` -- a run a sweep already has; :func:`train_recorded` --
:func:`snnl.train.train` with entries added to its record's config.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from snnl.data import Dataset
from snnl.results import Run, device_name, load_records, resolve_device, seed_everything
from snnl.train import TrainConfig, train


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


# ---- runs a sweep already has, training with a record -------------------------------------------
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
    return train(config, data, out_dir=out_dir, record_extra=extra, **kwargs)


# ---- the committed paper-profile records --------------------------------------------------------
IGNORED = {"device", "wait", "progress", "checkpoint_root"}  # config fields that do not change a result


def paper_records(results_dir="results") -> dict[str, list[dict]]:
    """Paper-profile records under ``results_dir`` by experiment, oldest first; of records with
    the same experiment, dataset, seed and config only the newest (a re-run replaces a run).
    Files that are not records (not JSON, or fields missing or of the wrong type) are skipped
    with a warning naming them (:func:`snnl.load_records`)."""
    recs = load_records(results_dir, profile="paper")
    newest = {}
    for r in recs:
        cfg = {k: v for k, v in (r.get("config") or {}).items() if k not in IGNORED}
        newest[(r["experiment"], r["dataset"], r["seed"], json.dumps(cfg, sort_keys=True, default=str))] = r
    out: dict[str, list[dict]] = {}
    for r in sorted(newest.values(), key=lambda r: str(r.get("started_at"))):
        out.setdefault(r["experiment"], []).append(r)
    return out
