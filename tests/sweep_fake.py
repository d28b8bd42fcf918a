"""A sweep for the tests of :mod:`snnl.sweeps`: each run counts to ``STEPS`` with a pause per step,
keeps its step in its checkpoint folder (a resumed run starts there), stops on a stop request
(SIGTERM) like :func:`snnl.train.train`, and writes one record. Sizes from the environment, so that
worker processes started by the tests see them: ``FAKE_RUNS`` runs, ``FAKE_STEP_S`` seconds a step."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from snnl.checkpointing import Preempted, stop_requested
from snnl.results import Run, load_records
from snnl.sweeps import Grid, Task

STEPS = 20
EXPERIMENT = "fake_sweep"


def plan(profile, out):
    return [Task(f"r{i}", f"cell{i % 2}", {"i": i}) for i in range(int(os.environ.get("FAKE_RUNS", "6")))]


def done(task, profile, out):
    recs = [r for r in load_records(out, EXPERIMENT) if r["config"]["key"] == task.key] if Path(out).exists() else []
    return recs[-1] if recs else None


def run(task, profile, out, checkpoint_dir, device):
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "state.json"
    step = json.loads(state.read_text())["step"] if state.exists() else 0
    resumed, pid = step, os.getpid()
    (folder / "started").write_text(f"{pid} {time.time()}\n")
    while step < STEPS:
        time.sleep(float(os.environ.get("FAKE_STEP_S", "0.05")))
        step += 1
        state.write_text(json.dumps({"step": step}))
        if stop_requested():
            raise Preempted(f"stopped at step {step}")
    return Run(EXPERIMENT, profile, "digits", 0, {"key": task.key}).finish(
        {"value": task.params["i"] ** 2}, out, history={"resumed_from": resumed, "pid": pid})


SWEEP = Grid(plan=plan, done=done, run=run, profiles=("small",), value=lambda rec: rec["metrics"]["value"])
