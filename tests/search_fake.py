"""A search for the tests of :mod:`snnl.sweeps`: each trial draws ``x`` in [0, 1], writes one record
at once (its value ``x``), and leaves a file in its checkpoint folder; 3 trials."""

from __future__ import annotations

from pathlib import Path

from snnl.results import Run, load_records
from snnl.sweeps import Search

EXPERIMENT = "fake_search"


def space(trial):
    return {"x": trial.suggest_float("x", 0.0, 1.0)}


def run(params, number, profile, out, checkpoint_dir, device):
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ran").write_text(f"{number}\n")
    return Run(EXPERIMENT, profile, "digits", number, {"x": params["x"]}).finish({"value": params["x"]}, out)


def records(out, profile):
    recs = load_records(out, EXPERIMENT, profile=profile) if Path(out).exists() else []
    return sorted(recs, key=lambda r: r["started_at"])


def sampler(profile):
    from snnl.sweeps.spec import load_optuna

    return load_optuna().samplers.RandomSampler()


SEARCH = Search(space=space, run=run, value=lambda rec: rec["metrics"]["value"],
                n_trials={"small": 3}, sampler=sampler, records=records)
