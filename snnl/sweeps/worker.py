"""The worker: takes the next trial of a sweep from its storage and runs it, until none is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from snnl.checkpointing import Preempted, clear_stop, request_stop, stop_requested
from snnl.results import record_tags
from snnl.sweeps.spec import (HEARTBEAT_S, MAX_ERRORS, Search, SweepError, Task, check, default_out, default_storage,
                              load_optuna, open_storage, open_study)


def states():
    from optuna.trial import TrialState

    return TrialState


def errors_by_run(trials) -> Counter:
    """Per run key, how many times it raised (not counting heartbeat failures or preemptions)."""
    return Counter(t.user_attrs.get("run") for t in trials if t.user_attrs.get("error"))


class _Worker:
    def __init__(self, name, profile, storage_url, out, checkpoints, device="auto", heartbeat=HEARTBEAT_S,
                 poll=None, log=print):
        self.name, self.profile, self.out = name, profile, Path(out)
        self.checkpoints = Path(checkpoints)
        self.device, self.log = device, log
        self.sweep = check(name, profile)
        self.storage = open_storage(storage_url, heartbeat)
        self.study = open_study(name, profile, self.storage)
        self.poll = poll if poll is not None else min(5.0, max(1.0, heartbeat / 2))  # waiting for others
        self.ran = 0
        self.current = None  # the number of the trial this worker runs
        self.errors_in_row = 0

    # -- grid
    def _fresh_trials(self) -> list:
        """The study's trials read from the storage itself (the study's own view is cached)."""
        return self.storage.get_all_trials(self.storage.get_study_id_from_name(self.study.study_name), deepcopy=False)

    def _enqueue(self) -> list:
        S = states()
        trials = self._fresh_trials()
        active = {t.user_attrs.get("run") for t in trials if t.state in (S.WAITING, S.RUNNING)}
        errors = errors_by_run(trials)
        tasks = [t for t in self.sweep.plan(self.profile, self.out)
                 if self.sweep.done(t, self.profile, self.out) is None]
        for t in tasks:
            if t.key not in active and errors[t.key] < MAX_ERRORS:
                self.study.enqueue_trial({}, user_attrs={"run": t.key, "cell": t.cell, "params": t.params})
        return tasks

    def _grid_objective(self, trial) -> float:
        optuna = load_optuna()
        S = states()
        key = trial.user_attrs.get("run")
        if key is None:  # another worker took the last queued run meanwhile
            trial.set_user_attr("idle", True)
            raise optuna.TrialPruned("nothing left to run")
        twins = [t for t in self._fresh_trials()  # fresh: the study's own view is cached
                 if t.user_attrs.get("run") == key and t.number != trial.number
                 and (t.state == S.COMPLETE or (t.state == S.RUNNING and t.number < trial.number))]
        if twins:  # queued twice by two workers at once: the first one runs it
            trial.set_user_attr("duplicate", True)
            raise optuna.TrialPruned(f"{key} is run by trial {twins[0].number}")
        task = Task(key, trial.user_attrs.get("cell", ""), trial.user_attrs.get("params", {}))
        rec = self.sweep.done(task, self.profile, self.out)
        if rec is None:
            with record_tags(trial=self._tag(trial, key)):
                rec = self._guard(trial, self.sweep.run, task, self.profile, self.out, self.checkpoints / key,
                                  self.device)
        if "path" in rec:
            trial.set_user_attr("record", Path(rec["path"]).name)
        return float(self.sweep.value(rec))

    # -- search
    def _adopt_records(self) -> None:
        """Give the storage back the finished trials it lacks (a new storage, the records committed)."""
        optuna = load_optuna()
        trials = self._fresh_trials()
        have = {t.user_attrs.get("record") for t in trials}
        live = {(t.number, json.dumps(t.params, sort_keys=True)) for t in trials}
        for rec in self.sweep.records(self.out, self.profile):
            name = Path(rec["path"]).name
            if name in have or "trial" not in rec:
                continue
            if (rec["trial"]["number"], json.dumps(rec["trial"]["params"], sort_keys=True)) in live:
                continue  # its own trial is here (its worker died before naming the record): retried, not adopted
            params, dists = rec["trial"]["params"], rec["trial"]["distributions"]
            value = self.sweep.value(rec)
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: optuna.distributions.json_to_distribution(json.dumps(v))
                                              for k, v in dists.items()},
                value=self.sweep.failed_value if value is None else value,
                user_attrs={"record": name, "adopted": True, "origin": rec["trial"]["number"],
                            **({} if value is not None else {"diverged": True})}))

    def _search_objective(self, trial) -> float:
        optuna = load_optuna()
        params = self.sweep.space(trial)
        dists = {k: json.loads(optuna.distributions.distribution_to_json(d)) for k, d in trial.distributions.items()}
        number = trial.user_attrs.get("origin")  # a retried run (its user attributes copied) keeps its seed, checkpoint
        if number is None:
            number = trial.number + self._number_shift()
            trial.set_user_attr("origin", number)
        key = f"t{number:03d}"
        with record_tags(trial={**self._tag(trial, key), "params": trial.params, "distributions": dists}):
            rec = self._guard(trial, self.sweep.run, params, number, self.profile, self.out, self.checkpoints / key,
                              self.device)
        trial.set_user_attr("record", Path(rec["path"]).name if "path" in rec else None)
        value = self.sweep.value(rec)
        if value is None:  # e.g. diverged: the sampler learns that region is bad (the record says why)
            trial.set_user_attr("diverged", True)
            return float(self.sweep.failed_value)
        return float(value)

    def _number_shift(self) -> int:
        """What a new trial adds to its number to name its run: past every adopted record's run number.
        A new storage numbers its trials from 0, so without it a new run would take the name, the seed
        and the checkpoint folder of a committed one (and a finished checkpoint would answer with that
        run's record)."""
        origins = [t.user_attrs["origin"] for t in self.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("adopted") and "origin" in t.user_attrs]
        return 1 + max(origins) if origins else 0

    def _search_left(self) -> int:
        S = states()
        trials = self.study.get_trials(deepcopy=False)
        counted = sum(t.state in (S.COMPLETE, S.RUNNING) for t in trials)
        return self.sweep.n_trials[self.profile] - counted

    def _guard(self, trial, fn, *args):
        """``fn(*args)``, its error kept in the trial (a preemption marked as such)."""
        self.current = trial.number
        try:
            rec = fn(*args)
        except Preempted:
            trial.set_user_attr("preempted", True)
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
            raise
        self.ran += 1
        return rec

    def _tag(self, trial, key) -> dict:
        return {"study": self.study.study_name, "number": trial.number, "run": key}

    # -- the loop
    def run(self) -> int:
        optuna = load_optuna()
        S = states()
        search = isinstance(self.sweep, Search)
        objective = self._search_objective if search else self._grid_objective
        if search:
            self._adopt_records()
        while True:
            if stop_requested():  # SIGTERM between runs: nothing to give back
                raise Preempted(f"{self.name}: stopped (SIGTERM) between runs")
            optuna.storages.fail_stale_trials(self.study)  # a dead worker's run goes back to the queue
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == S.WAITING for t in trials)
            running = any(t.state == S.RUNNING for t in trials)
            if search:
                if self._search_left() <= 0 and not waiting:
                    if not running:
                        return self.ran
                    time.sleep(self.poll)  # a dead worker's trial may come back
                    continue
            elif not waiting:
                tasks = self._enqueue()
                if not any(t.state == S.WAITING for t in self.study.get_trials(deepcopy=False)):
                    if not running and not tasks:
                        return self.ran
                    if not running:  # left: runs that failed MAX_ERRORS times
                        self.log(f"{self.name}: {len(tasks)} run(s) failed {MAX_ERRORS} times; see --status")
                        return self.ran
                    time.sleep(self.poll)
                    continue
            self.current = None
            self.study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[self._note])
            if stop_requested():
                if self.current is not None:
                    frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == self.current)
                    if frozen.state == S.FAIL:  # its checkpoint is saved: back to the queue
                        optuna.storages.RetryHeartbeatStaleTrialCallback()(self.study, frozen)
                raise Preempted(f"{self.name}: stopped (SIGTERM); the run is queued again")

    def _note(self, study, trial) -> None:
        S = states()
        self.errors_in_row = self.errors_in_row + 1 if trial.user_attrs.get("error") else 0
        if self.errors_in_row > MAX_ERRORS:
            raise SweepError(f"{self.name}: {self.errors_in_row} runs in a row failed, the last with: "
                             f"{trial.user_attrs['error'][:300]}")
        if trial.state == S.FAIL and trial.user_attrs.get("error"):
            self.log(f"{self.name}: trial {trial.number} ({trial.user_attrs.get('run')}) failed: "
                     f"{trial.user_attrs['error'][:200]}")
        elif trial.state == S.COMPLETE:
            what = trial.user_attrs.get("run") or ", ".join(f"{k} {v:.4g}" for k, v in trial.params.items())
            self.log(f"{self.name}: trial {trial.number} ({what}) done, value {trial.value:.4g}"
                     + (" (diverged)" if trial.user_attrs.get("diverged") else ""))


def work(name: str, profile: str, storage: str | None = None, out=None, checkpoints=None, device: str = "auto",
         heartbeat: int = HEARTBEAT_S, poll: float | None = None, log=print) -> int:
    """Run the sweep's trials in this process until none is left; returns how many runs it did.
    A SIGTERM saves the current run's checkpoint, queues the run again and raises
    :class:`~snnl.checkpointing.Preempted`."""
    out = Path(out if out is not None else default_out(name, profile))
    storage = storage or default_storage(out)
    checkpoints = checkpoints or Path("_build/checkpoints") / name
    w = _Worker(name, profile, storage, out, checkpoints, device, heartbeat, poll, log)
    old = signal.signal(signal.SIGTERM, lambda *_: request_stop()) if _main_thread() else None
    clear_stop()
    try:
        return w.run()
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def spawn_workers(n: int, argv: list[str]) -> list[int]:
    """Start ``n`` worker processes (``python -m snnl sweep ... --workers 1``), one math thread each;
    a SIGTERM to this process is passed on to them. Returns their exit codes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "snnl", "sweep", *argv, "--workers", "1"], env=env)
             for _ in range(n)]

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = signal.signal(signal.SIGTERM, forward) if _main_thread() else None
    try:
        return [p.wait() for p in procs]
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
