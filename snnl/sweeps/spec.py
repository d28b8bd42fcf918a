"""What a sweep is (:class:`Task`, :class:`Grid`, :class:`Search`), the named sweeps
(:data:`SWEEPS`) and their storages."""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from snnl.extras import require

SWEEPS = {
    "table1_study": "snnl.experiments.regularization.study:SWEEP",
    "fig7": "snnl.experiments.regularization.fig7:SWEEP",
    "fig8": "snnl.experiments.regularization.fig8:SWEEP",
    "ood_benchmark": "snnl.experiments.beyond.benchmark:SWEEP",
}
HEARTBEAT_S = 60  # a live worker writes its heartbeat this often; a run silent for GRACE x that is stale
GRACE = 2
MAX_ERRORS = 2  # a run that raised this many times is left as failed (its errors in the storage)
EXIT_PREEMPTED = 143  # 128 + SIGTERM


class SweepError(ValueError):
    """Bad input to a sweep (unknown name, profile, storage): a one-line message."""


@dataclass(frozen=True)
class Task:
    """One run of a sweep: ``key`` (unique in its sweep), the ``cell`` it belongs to (rows of
    ``--status``) and its JSON-able ``params``."""

    key: str
    cell: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """A sweep of fixed runs. ``plan(profile, out)``: every run the sweep needs, given the records
    under ``out`` (a plan may grow with them: the study promotes cells); ``done(task, profile, out)``:
    the run's record or None; ``run(task, profile, out, checkpoints, device)``: run it, write its
    record and return it; ``value(record)``: the trial's value (default 0)."""

    plan: Callable[[str, Path], list[Task]]
    done: Callable[[Task, str, Path], dict | None]
    run: Callable[..., dict]
    profiles: tuple[str, ...] = ("small", "paper")
    value: Callable[[dict], float] = lambda rec: 0.0
    description: str = ""
    folder: str | None = None  # its records' folder under results/<profile>/ (default: its name)


@dataclass(frozen=True)
class Search:
    """A search: ``space(trial) -> params`` (Optuna ``suggest_*`` calls), ``run(params, number,
    profile, out, checkpoints, device) -> record``, ``value(record) -> float`` (maximised; None
    for a run that failed in a way that is a result, e.g. diverged),
    ``n_trials[profile]``, ``sampler(profile)``: such a run's trial gets ``failed_value`` and the
    user attribute ``diverged``; ``records(out, profile)``: the sweep's records
    (a storage that lacks some, e.g. on a new machine, gets them back as finished trials)."""

    space: Callable[[Any], dict]
    run: Callable[..., dict]
    value: Callable[[dict], float | None]
    n_trials: dict
    sampler: Callable[[str], Any]
    records: Callable[[Path, str], list[dict]]
    failed_value: float = 0.0  # the trial's value when ``value(record)`` is None (a diverged run: chance)
    description: str = ""
    folder: str | None = None  # its records' folder under results/<profile>/ (default: its name)

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.n_trials)


def load_optuna():
    """``import optuna`` (quiet), or a one-line error naming the extra that installs it."""
    return require("optuna", "sweeps", "sweeps (python -m snnl sweep)")


def get_sweep(name: str) -> Grid | Search:
    """The sweep ``name``: one of :data:`SWEEPS`, or a sweep of your own as ``"module:ATTRIBUTE"``
    (a :class:`Grid` or :class:`Search` importable by every worker)."""
    if name not in SWEEPS and ":" not in name:
        raise SweepError(f"unknown sweep {name!r}; choose from {', '.join(SWEEPS)} (or module:ATTRIBUTE)")
    module, attr = SWEEPS.get(name, name).split(":", 1)
    try:
        sweep = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SweepError(f"cannot load sweep {name!r}: {type(e).__name__}: {e}") from None
    if not isinstance(sweep, (Grid, Search)):
        raise SweepError(f"{name} is a {type(sweep).__name__}, not a snnl.sweeps Grid or Search")
    return sweep


def default_out(name: str, profile: str) -> Path:
    """Where a sweep's records go by default: ``results/<profile>/<its folder>``."""
    sweep = get_sweep(name)
    return Path("results") / profile / (sweep.folder or name.replace(":", "_"))


def default_storage(out) -> str:
    """The default storage: an SQLite file in the sweep's output folder (nothing to install or start)."""
    return f"sqlite:///{Path(out) / 'sweep.sqlite3'}"


def open_storage(url: str, heartbeat: int = HEARTBEAT_S):
    """An Optuna storage for ``url``; a one-line :class:`SweepError` when it cannot be reached."""
    optuna = load_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        if url.startswith("journal:"):
            path = url[len("journal:"):]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
        engine = {}
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
        for attempt in range(5):
            try:
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=GRACE * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
                if url.startswith("sqlite"):
                    _serialise_sqlite(storage.engine)
                return storage
            except Exception as e:  # noqa: BLE001
                # workers that start together on a new storage race to create its tables: the loser retries
                racing = any(w in str(e) for w in ("UNIQUE constraint", "already exists", "duplicate key"))
                if not racing or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as e:  # noqa: BLE001 - drivers raise their own types; one line names the storage
        msg = " ".join(str(e).split())
        raise SweepError(f"cannot open storage {redact(url)}: {type(e).__name__}: {msg[:300]}") from None


def _serialise_sqlite(engine) -> None:
    """Make every transaction on an SQLite storage take the write lock when it begins (``BEGIN
    IMMEDIATE``). Python's sqlite3 otherwise reads outside any transaction, so two workers can both
    read a queued trial as waiting and both take it (seen: one run done twice)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners: closed


def redact(url: str) -> str:
    """``url`` without its password."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':')[0]}:***@{host}"
    return url


def study_name(name: str, profile: str) -> str:
    return f"{name}-{profile}"


def open_study(name: str, profile: str, storage):
    optuna = load_optuna()
    sweep = get_sweep(name)
    sampler = sweep.sampler(profile) if isinstance(sweep, Search) else None
    return optuna.create_study(study_name=study_name(name, profile), storage=storage, direction="maximize",
                               sampler=sampler, load_if_exists=True)


def check(name: str, profile: str, workers: int = 1) -> Grid | Search:
    """The sweep ``name``, after checking its profile and ``workers``: one-line :class:`SweepError`."""
    sweep = get_sweep(name)
    if profile not in sweep.profiles:
        raise SweepError(f"sweep {name} has no profile {profile!r}; choose from {', '.join(sweep.profiles)}")
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    return sweep
