"""Sweeps on Optuna: many runs, many worker processes, many machines, one storage.

A sweep is a named set of runs (:data:`SWEEPS`): a **grid** (:class:`Grid`: the runs of a plan, each
one Optuna trial with fixed parameters, e.g. the Table 1 study) or a **search** (:class:`Search`:
trials whose parameters a sampler proposes, e.g. Fig. 7's batched Gaussian-process search). Every
worker, on any machine, opens the same storage and takes the next trial; the runs' results stay
the project's JSON records (each names its trial, :func:`snnl.results.record_tags`).

* Storage: an SQLAlchemy URL (``sqlite:///sweeps.db`` on one machine, ``postgresql+psycopg://...``
  across several) or ``journal:PATH`` (Optuna's journal file). SQL storages keep heartbeats: the
  run of a worker that died (SIGKILL, a lost machine) is failed after the grace period and queued
  again (Optuna's ``RetryHeartbeatStaleTrialCallback``); another worker resumes it from
  its checkpoint folder when it can reach it, else from scratch.
* SIGTERM (preemption): the run saves a checkpoint at its next step, its trial is queued again, and
  the worker exits with status 143.
* A run whose record exists never runs again; a finished run started again reports its record
  (:func:`snnl.train.train` keeps the record's name in the checkpoint folder).

Command line: ``python -m snnl sweep NAME --profile P [--storage URL] [--out DIR] [--workers N] [--status]``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from snnl.checkpointing import Preempted
from snnl.sweeps.spec import (EXIT_PREEMPTED, GRACE, HEARTBEAT_S, MAX_ERRORS, SWEEPS, Grid, Search, SweepError,
                              Task, check, default_out, default_storage, get_sweep, load_optuna, open_storage, open_study, redact,
                              study_name)
from snnl.sweeps.worker import errors_by_run, spawn_workers, states, work

__all__ = ["EXIT_PREEMPTED", "GRACE", "HEARTBEAT_S", "MAX_ERRORS", "SWEEPS", "Grid", "Search", "SweepError", "Task",
           "check", "default_out", "default_storage", "format_status", "get_sweep", "load_optuna", "open_storage", "open_study",
           "redact", "run_sweep", "spawn_workers", "status", "study_name", "work"]


def run_sweep(name: str, profile: str, workers: int = 1, storage: str | None = None, out=None, checkpoints=None,
              device: str = "auto", heartbeat: int = HEARTBEAT_S, log=print) -> int:
    """Run the sweep with ``workers`` local workers (in this process when 1, else that many
    processes with one math thread each). Returns the runs this process did (``workers == 1``),
    else 0; a worker that fails: RuntimeError naming the exit codes."""
    check(name, profile, workers)
    out = Path(out if out is not None else default_out(name, profile))
    storage = storage or default_storage(out)
    open_storage(storage, heartbeat)  # an unreachable storage: one line, before any training
    if workers == 1:
        return work(name, profile, storage, out, checkpoints, device, heartbeat, log=log)
    argv = [name, "--profile", profile, "--storage", storage, "--out", str(out), "--device", device,
            "--heartbeat", str(heartbeat)] + (["--checkpoints", str(checkpoints)] if checkpoints else [])
    rcs = spawn_workers(workers, argv)
    if EXIT_PREEMPTED in rcs and set(rcs) <= {0, EXIT_PREEMPTED}:
        raise Preempted(f"{name}: workers stopped (SIGTERM); their runs are queued again")
    if any(rcs):
        raise RuntimeError(f"{name}: a worker failed (exit codes {rcs})")
    return 0


# ---- status ------------------------------------------------------------------------------------------
def status(name: str, profile: str, storage: str | None = None, out=None) -> list[dict]:
    """Per cell: the runs done (a record), running, failed (raised :data:`MAX_ERRORS` times, or
    the last try failed) and pending."""
    S = states()
    out = Path(out if out is not None else default_out(name, profile))
    sweep = check(name, profile)
    study = open_study(name, profile, open_storage(storage or default_storage(out)))
    trials = study.get_trials(deepcopy=False)
    if isinstance(sweep, Search):
        n = sweep.n_trials[profile]
        done = sum(t.state == S.COMPLETE for t in trials)
        running = sum(t.state == S.RUNNING for t in trials)
        failed = sum(t.state == S.FAIL and bool(t.user_attrs.get("error")) for t in trials)
        return [{"cell": f"{name} search", "done": done, "running": running, "failed": failed,
                 "pending": max(0, n - done - running)}]
    running = {t.user_attrs.get("run") for t in trials if t.state == S.RUNNING}
    errors = errors_by_run(trials)
    rows: dict[str, Counter] = {}
    for t in sweep.plan(profile, out):
        c = rows.setdefault(t.cell, Counter())
        if sweep.done(t, profile, out) is not None:
            c["done"] += 1
        elif t.key in running:
            c["running"] += 1
        elif errors[t.key] >= MAX_ERRORS:
            c["failed"] += 1
        else:
            c["pending"] += 1
    return [{"cell": cell, **{k: c[k] for k in ("done", "running", "failed", "pending")}} for cell, c in rows.items()]


def format_status(rows: list[dict]) -> str:
    width = max([len(r["cell"]) for r in rows] + [4])
    lines = [f"{'cell':<{width}}  done  running  failed  pending"]
    lines += [f"{r['cell']:<{width}}  {r['done']:>4}  {r['running']:>7}  {r['failed']:>6}  {r['pending']:>7}"
              for r in rows]
    tot = {k: sum(r[k] for r in rows) for k in ("done", "running", "failed", "pending")}
    lines.append(f"{'all':<{width}}  {tot['done']:>4}  {tot['running']:>7}  {tot['failed']:>6}  {tot['pending']:>7}")
    return "\n".join(lines)
