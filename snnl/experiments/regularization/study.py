"""Table 1 recipe study: is the entangling gain real? (paper Section 4, Table 1)

Which part of the (unpublished) Table 1 recipe decides whether entangling helps? Each entangled
variant against its paired baseline (same recipe, alpha 0, same seeds):

* ``zoo-*``: the only training script the authors released (cleverhans v3 model zoo): the
  ``zoo`` model, Adam 1e-3, batch 128, 6 epochs (2,814 steps), the SNNL with their 1e-5 formula on
  conv1..conv3 at a fixed T = 100 and alpha 10; also with their learned-temperature default, and
  on Fashion-MNIST.
* ``cnn-*``: our Table 1 CNN (Adam 1e-4, batch 256) with one change at a time: fixed T = 100,
  the penultimate layer left out, conv layers only, alpha 0.1 and 1.
* ``wide-*``: an overfitting regime: a wider CNN (conv 32/64, FC 1024/512) on 6,000 training
  images of Fashion-MNIST, where the baseline reaches ~100% train accuracy, at alpha 0.1, 1, 10.

Every run records per layer the SNNL, T and the activations' scale against T (median squared
distance / T: at a fixed T a network can raise its SNNL by shrinking its activations).
Profiles: ``paper`` (full length), ``screen`` (3,000 steps; a cell beating its baseline by more than
:data:`PROMOTE_POINTS` there gets 4 seeds at full length), ``small`` (a tiny run on digits, for the
book). Parts: :data:`PAPER`, :data:`VARIANTS`, :data:`CELLS`, :func:`plan`, :func:`run_study`,
:func:`study_table`, :func:`format_study`, :func:`plot_study_curves`, :func:`report_items`::

    python -m snnl sweep table1_study --profile paper --workers 2   # or, the same runs:
    python -m snnl.experiments.regularization --jobs 2 --out results/paper/table1_study
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from snnl.experiments.regularization.table1 import PAPER_TABLE1
from snnl.experiments.common import config_key, find_record, train_recorded
from snnl.experiments.common.curves import mean_history, plot_training
from snnl.results import load_records
from snnl.stats import compare, fmt_ci, fmt_p
from snnl.sweeps import Grid, Task, run_sweep
from snnl.train import TrainConfig, load_for

EXPERIMENT = "table1_study"
PAPER = PAPER_TABLE1  # the paper's Table 1 (entangled, baseline), in percent
PROMOTE_POINTS = 0.3  # a screened cell beating its baseline by more than this gets 4 seeds at full length
FULL_SEEDS = (0, 1, 2, 3)
SCREEN_SEEDS = (0, 1)
SCREEN_STEPS = 3000

# the recipes (TrainConfig fields); the zoo's 6 epochs: ceil(60,000 / 128) = 469 batches x 6
ZOO = dict(model="zoo", steps=2814, batch_size=128, lr=1e-3, temperature=100.0, learn_temperature=False,
           regularizer="snnl-reference", eval_every=469, log_every=50)
CNN = dict(model="cnn", steps=14000, batch_size=256, lr=1e-4, eval_every=500, log_every=50)
WIDE = dict(model="cnn-wide", n_train=6000, steps=14000, batch_size=256, lr=1e-4, eval_every=250, log_every=50)
SMALL = dict(model="zoo", steps=150, batch_size=64, lr=1e-3, temperature=100.0,
             learn_temperature=False, regularizer="snnl-reference", eval_every=150, log_every=10)  # one evaluation


@dataclass(frozen=True)
class Variant:
    """One recipe of the study: its name (``config.variant`` of its records), dataset, the
    :class:`TrainConfig` fields, and the seeds and profile it runs at by default."""

    name: str
    dataset: str
    fields: dict
    profile: str = "screen"  # "paper": declared at full length; "screen": 3,000 steps first

    def config(self, seed: int, profile: str, device: str = "auto") -> TrainConfig:
        f = dict(self.fields)
        if profile == "screen":
            f["steps"] = min(f["steps"], SCREEN_STEPS)
        return TrainConfig(**f, dataset=self.dataset, seed=seed, device=device, profile=profile,
                           experiment=EXPERIMENT)


@dataclass(frozen=True)
class Cell:
    """An entangled variant against its paired baseline."""

    name: str
    variant: str
    baseline: str
    question: str


def _variants() -> dict[str, Variant]:
    v = []
    for ds, short in (("mnist", "mnist"), ("fashion-mnist", "fmnist")):
        v += [Variant(f"zoo-{short}-base", ds, {**ZOO, "alpha": 0.0}, "paper"),
              Variant(f"zoo-{short}-fixedT", ds, {**ZOO, "alpha": 10.0}, "paper")]
    v.append(Variant("zoo-mnist-learnedT", "mnist", {**ZOO, "alpha": 10.0, "learn_temperature": True}, "paper"))
    for ds, short in (("mnist", "mnist"), ("fashion-mnist", "fmnist")):
        v += [Variant(f"cnn-{short}-base", ds, {**CNN, "alpha": 0.0}),
              Variant(f"cnn-{short}-fixedT", ds, {**CNN, "alpha": 10.0, "learn_temperature": False}),
              Variant(f"cnn-{short}-nopenult", ds, {**CNN, "alpha": 10.0, "layers": ("conv1", "conv2", "fc1")}),
              Variant(f"cnn-{short}-conv", ds, {**CNN, "alpha": 10.0, "layers": ("conv1", "conv2")}),
              Variant(f"cnn-{short}-a0.1", ds, {**CNN, "alpha": 0.1}),
              Variant(f"cnn-{short}-a1", ds, {**CNN, "alpha": 1.0})]
    v.append(Variant("wide-fmnist6k-base", "fashion-mnist", {**WIDE, "alpha": 0.0}))
    for a in (0.1, 1.0, 10.0):
        v.append(Variant(f"wide-fmnist6k-a{a:g}", "fashion-mnist", {**WIDE, "alpha": a}))
    return {x.name: x for x in v}


VARIANTS = _variants()
CELLS = [
    Cell("zoo-mnist", "zoo-mnist-fixedT", "zoo-mnist-base", "the authors' released recipe, MNIST"),
    Cell("zoo-mnist-learnedT", "zoo-mnist-learnedT", "zoo-mnist-base", "their recipe with a learned T"),
    Cell("zoo-fmnist", "zoo-fmnist-fixedT", "zoo-fmnist-base", "their recipe on Fashion-MNIST"),
] + [
    Cell(f"cnn-{ds}-{k}", f"cnn-{ds}-{k}", f"cnn-{ds}-base", q)
    for ds in ("fmnist", "mnist")
    for k, q in (("fixedT", "our CNN, fixed T instead of learned"), ("nopenult", "our CNN, penultimate layer out"),
                 ("conv", "our CNN, conv layers only"), ("a0.1", "our CNN, alpha 0.1"), ("a1", "our CNN, alpha 1"))
] + [Cell(f"wide-fmnist6k-a{a:g}", f"wide-fmnist6k-a{a:g}", "wide-fmnist6k-base",
          f"overfitting regime, alpha {a:g}") for a in (0.1, 1.0, 10.0)]
SMALL_CELLS = [Cell("zoo-digits", "zoo-digits-fixedT", "zoo-digits-base", "the authors' recipe on digits (tiny)")]
SMALL_VARIANTS = {
    "zoo-digits-base": Variant("zoo-digits-base", "digits", {**SMALL, "alpha": 0.0}, "small"),
    "zoo-digits-fixedT": Variant("zoo-digits-fixedT", "digits", {**SMALL, "alpha": 10.0}, "small"),
}


# ---- the runs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    variant: str
    seed: int
    profile: str

    @property
    def key(self) -> str:
        return f"{self.variant}_{self.profile}_s{self.seed}"


def _variant(name: str) -> Variant:
    if (v := {**VARIANTS, **SMALL_VARIANTS}.get(name)) is None:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join([*VARIANTS, *SMALL_VARIANTS])}")
    return v


def run_config(run: PlannedRun, device: str = "auto") -> dict:
    """The record config of a planned run: its :class:`TrainConfig` plus ``variant``."""
    return {**asdict(_variant(run.variant).config(run.seed, run.profile, device)), "variant": run.variant}


def promoted(records: list[dict], cells=CELLS) -> list[str]:
    """Cells whose screening runs beat their baseline by more than :data:`PROMOTE_POINTS` (mean
    test accuracy over the shared seeds, in points)."""
    out = []
    for c in cells:
        a = _accuracies(records, c.variant, "screen")
        b = _accuracies(records, c.baseline, "screen")
        shared = sorted(set(a) & set(b))
        if shared and np.mean([a[s] - b[s] for s in shared]) > PROMOTE_POINTS:
            out.append(c.name)
    return out


def plan(records: list[dict], profile: str = "paper") -> list[PlannedRun]:
    """Every run the study needs, in the order it runs them, given the records it has.

    ``profile="small"``: the tiny book run. Otherwise: the variants declared at full length (4
    seeds, paired by seed; the authors' recipe on MNIST first), every other variant at screening
    length (2 seeds, seed 0 of all first), then 4 seeds at full length of each promoted cell and of
    its baseline."""
    if profile == "small":
        return [PlannedRun(v, s, "small") for s in (0, 1) for v in SMALL_VARIANTS]
    runs: list[PlannedRun] = []
    full = [v for v in VARIANTS.values() if v.profile == "paper"]
    # screening order: the overfitting regime's baseline and alpha 1 first, then our CNN's cells
    # (Fashion-MNIST, where the baseline underfits, before MNIST), then the other alphas
    order = ("wide-fmnist6k-base", "wide-fmnist6k-a1", "cnn-fmnist", "cnn-mnist", "wide-fmnist6k")
    screen = sorted((v for v in VARIANTS.values() if v.profile == "screen"),
                    key=lambda v: next(i for i, p in enumerate(order) if v.name == p or v.name.startswith(p + "-")))
    first = [v for v in full if v.name.startswith("zoo-mnist") and "learned" not in v.name]
    for s in FULL_SEEDS:
        runs += [PlannedRun(v.name, s, "paper") for v in first]
    runs += [PlannedRun(v.name, SCREEN_SEEDS[0], "screen") for v in screen]
    for s in FULL_SEEDS:
        runs += [PlannedRun(v.name, s, "paper") for v in full if v not in first]
    for s in SCREEN_SEEDS[1:]:
        runs += [PlannedRun(v.name, s, "screen") for v in screen]
    cells = {c.name: c for c in CELLS}
    for name in promoted(records):
        for s in FULL_SEEDS:
            runs += [PlannedRun(cells[name].baseline, s, "paper"), PlannedRun(cells[name].variant, s, "paper")]
    seen, out = set(), []
    for r in runs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def pending(out_dir, profile: str = "paper") -> list[PlannedRun]:
    """The planned runs with no record under ``out_dir`` yet."""
    recs = load_records(out_dir, EXPERIMENT) if out_dir is not None and Path(out_dir).exists() else []
    have = {config_key(r["config"]) for r in recs}
    return [r for r in plan(recs, profile) if config_key(run_config(r)) not in have]


def run_one(run: PlannedRun, out_dir, checkpoint_root=None, device: str = "auto", progress: bool = False,
            data=None) -> dict:
    """Train one planned run and write its record (``experiment="table1_study"``)."""
    cfg = _variant(run.variant).config(run.seed, run.profile, device)
    ckpt = None if checkpoint_root is None else Path(checkpoint_root) / run.key
    res = train_recorded(cfg, data if data is not None else load_for(cfg), out_dir, {"variant": run.variant},
                         checkpoint_dir=ckpt, checkpoint_every=500, progress=progress)
    return res.record


def run_study(out_dir, checkpoint_root, jobs: int = 1, profile: str = "paper", device: str = "auto",
              log=print, storage: str | None = None) -> int:
    """Every pending run of the study: the sweep ``table1_study`` with ``jobs`` workers sharing
    ``storage`` (:func:`snnl.sweeps.run_sweep`). Returns the runs done here (``jobs == 1``) or the
    records. ``log``: one line per finished run (``jobs == 1``; the book drops them)."""
    n = run_sweep(EXPERIMENT, profile, jobs, storage, out_dir, checkpoint_root, device, log=log)
    return n if jobs == 1 else len(load_records(out_dir, EXPERIMENT))


def _sweep_plan(profile: str, out) -> list[Task]:
    recs = load_records(out, EXPERIMENT) if Path(out).exists() else []
    return [Task(r.key, f"{r.variant} ({r.profile})", asdict(r)) for r in plan(recs, profile)]


def _sweep_done(task, profile: str, out) -> dict | None:
    return find_record(out, EXPERIMENT, run_config(PlannedRun(**task.params))) if Path(out).exists() else None


SWEEP = Grid(plan=_sweep_plan, done=_sweep_done, profiles=("small", "paper"),  # a run's folder: <root>/<key>
             run=lambda task, profile, out, ckpt, device: run_one(PlannedRun(**task.params), out, Path(ckpt).parent,
                                                                  device),
             value=lambda rec: rec["metrics"]["test_accuracy"],
             description="the Table 1 recipe study: screening, full-length and promoted runs")


# ---- results ---------------------------------------------------------------------------------
def _runs(records: list[dict], variant: str, profile: str) -> list[dict]:
    return [r for r in records if (r.get("config") or {}).get("variant") == variant and r.get("profile") == profile]


def _accuracies(records: list[dict], variant: str, profile: str) -> dict[int, float]:
    """seed -> test accuracy (%) of ``variant`` at ``profile`` (the newest record per seed)."""
    runs = sorted(_runs(records, variant, profile), key=lambda r: str(r.get("started_at")))
    return {int(r["seed"]): 100.0 * float(r["metrics"]["test_accuracy"]) for r in runs}


def study_table(records: list[dict], cells=None) -> list[dict]:
    """One row per (cell, profile) that has runs on both sides: means with 95% CIs, the
    difference with its CI, the p-value (paired over shared seeds, else Welch), train accuracy."""
    cells = cells if cells is not None else CELLS + SMALL_CELLS
    rows = []
    for c in cells:
        for profile in ("paper", "screen", "small"):
            a = _accuracies(records, c.variant, profile)
            b = _accuracies(records, c.baseline, profile)
            if not a or not b:
                continue
            cmp = compare(list(a.values()), list(b.values()), list(a), list(b))
            steps = sorted({int(r["config"]["steps"]) for r in records
                            if r["config"].get("variant") in (c.variant, c.baseline) and r["profile"] == profile})
            tr_a, tr_b = ([float(r["metrics"]["train_accuracy"]) for r in _runs(records, v, profile)]
                          for v in (c.variant, c.baseline))
            rows.append({"cell": c.name, "question": c.question, "profile": profile, "steps": steps,
                         "dataset": _variant(c.variant).dataset, "variant": c.variant, "baseline": c.baseline,
                         "seeds": sorted(set(a) | set(b)), "n": (len(a), len(b)), "comparison": cmp,
                         "train_accuracy": (100 * float(np.mean(tr_a)), 100 * float(np.mean(tr_b))),
                         "gain": cmp.diff})
    return rows


def verdict(row: dict) -> str:
    """``"entangling helps"`` / ``"entangling hurts"`` (the 95% CI of the difference excludes 0),
    ``"no significant difference"``, or ``"too few runs"``."""
    return {"higher": "entangling helps", "lower": "entangling hurts"}.get(row["comparison"].direction,
                                                                         row["comparison"].direction)


def format_study(rows: list[dict]) -> str:
    """The study as a Markdown table."""
    out = ["| cell | profile (steps) | dataset | entangled: mean ± std [95% CI] | baseline: mean ± std [95% CI] "
           "| difference [95% CI] | p | seeds | train acc. ent. / base | verdict |",
           "|---|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        c = r["comparison"]
        ci = "" if c.diff_ci is None else f" [{c.diff_ci[0]:+.2f}, {c.diff_ci[1]:+.2f}]"
        out.append(f"| {r['cell']} | {r['profile']} ({', '.join(map(str, r['steps']))}) | {r['dataset']} | "
                   f"{fmt_ci(c.a)} | {fmt_ci(c.b)} | {c.diff:+.2f}{ci} | {fmt_p(c.p)} | "
                   f"{len(r['seeds'])} ({r['n'][0]}+{r['n'][1]}) | "
                   f"{r['train_accuracy'][0]:.1f} / {r['train_accuracy'][1]:.1f} | {verdict(r)} |")
    return "\n".join(out)


def plot_study_curves(records: list[dict], cell: Cell | str, profile: str = "paper"):
    """Per-layer training SNNL, temperature and activation scale, and train/test CE over steps:
    baseline (dashed) vs entangled (solid), averaged over seeds (:func:`snnl.experiments.common.curves.plot_training`)."""
    cell = cell if isinstance(cell, Cell) else {c.name: c for c in CELLS + SMALL_CELLS}[cell]
    return plot_training({"entangled": _runs(records, cell.variant, profile),
                          "baseline": _runs(records, cell.baseline, profile)},
                         f"{cell.name} ({profile}): {cell.question}")


def plot_study(rows: list[dict], ax=None):
    """Difference in test accuracy (entangled - baseline, points) with its 95% CI, per cell."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.32 * max(len(rows), 3) + 1))
    for i, r in enumerate(rows):
        c = r["comparison"]
        col = {"entangling helps": "tab:green", "entangling hurts": "tab:red"}.get(verdict(r), "0.4")
        if c.diff_ci is not None:
            ax.plot(c.diff_ci, [i, i], color=col, lw=2)
        ax.plot([c.diff], [i], "o", color=col)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r['cell']} ({r['profile']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy, entangled - baseline (points), 95% CI",
           title="Table 1 study: the entangling gain per recipe")
    return ax


def featured(rows: list[dict]) -> list[dict]:
    """Rows to draw curves for: the authors' recipe on MNIST and the largest other gain (else the small rows)."""
    zoo = [r for r in rows if r["cell"] == "zoo-mnist" and r["profile"] == "paper"]
    others = [r for r in rows if r["profile"] in ("paper", "screen") and r not in zoo]
    best = [max(others, key=lambda r: r["gain"])] if others else []
    return zoo + best or [r for r in rows if r["profile"] == "small"]


def final_scales(records: list[dict], cell: Cell, profile: str = "paper") -> dict[str, tuple[float, float]]:
    """Per layer: the activation scale (median squared distance / T) at the end of training,
    entangled and baseline, averaged over seeds."""
    ent, base = (mean_history(_runs(records, v, profile)).get("scale", {}) for v in (cell.variant, cell.baseline))
    return {k: (ent[k][-1], base[k][-1]) for k in ent if base.get(k)}


def study_verdict(rows: list[dict], records: list[dict]) -> list[str]:
    """The study's findings in sentences, computed from its rows (see :func:`study_table`)."""
    out, cells, counts = [], {c.name: c for c in CELLS + SMALL_CELLS}, {}
    for r in rows:
        c, ci = r["comparison"], r["comparison"].diff_ci
        counts.setdefault(verdict(r), []).append(f"{r['cell']} ({r['profile']})")
        if r["profile"] != "small" and not r["cell"].startswith(("zoo", "wide")):
            continue
        out.append(f"{r['cell']} ({cells[r['cell']].question}; {r['profile']}, {r['n'][0]} + {r['n'][1]} runs of "
                   f"{r['steps'][-1]} steps): entangled {c.a.mean:.2f}% vs baseline {c.b.mean:.2f}% (train "
                   f"{r['train_accuracy'][0]:.1f}% vs {r['train_accuracy'][1]:.1f}%), {c.diff:+.2f} points"
                   + ("" if ci is None else f" (95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}], p = {fmt_p(c.p)})")
                   + f": {verdict(r)}.")
        if r["cell"].startswith("zoo") and (sc := final_scales(records, cells[r["cell"]], r["profile"])):
            out.append(f"{r['cell']}: median squared distance / T at the end, entangled vs baseline: "
                       + ", ".join(f"{k} {a:.3g} vs {b:.3g}" for k, (a, b) in sc.items()) + ".")
    out.append("All cells: " + "; ".join(f"{k}: {len(v)} ({', '.join(v)})" for k, v in sorted(counts.items())) + ".")
    if rows:
        best = max(rows, key=lambda r: r["gain"])
        out.append(f"Largest gain: {best['cell']} ({best['profile']}), {best['gain']:+.2f} points, "
                   f"p = {fmt_p(best['comparison'].p)}.")
    return out


def report_items(records: list[dict]) -> list[dict]:
    """The study's rows for the reproduction report, an addition to the paper's items: one per cell
    and profile (``item``, ``ours``: the difference with its 95% CI and p, ``runs``, ``verdict``)."""
    return [{"item": f"Table 1 study: {r['cell']} ({r['profile']}, {', '.join(map(str, r['steps']))} steps)",
             "ours": f"{fmt_ci(r['comparison'].a)} vs {fmt_ci(r['comparison'].b)}: {r['comparison'].diff:+.2f}"
                     + ("" if r["comparison"].diff_ci is None else
                        " [{:+.2f}, {:+.2f}]".format(*r["comparison"].diff_ci)) + f", p = {fmt_p(r['comparison'].p)}",
             "runs": f"{r['n'][0]} + {r['n'][1]}", "verdict": verdict(r), "experiment": EXPERIMENT}
            for r in study_table(records, CELLS) if r["profile"] in ("paper", "screen")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.regularization", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/paper/table1_study", help="folder of the study's records")
    p.add_argument("--checkpoints", default="_build/checkpoints/table1_study", help="checkpoint folders, one per run")
    p.add_argument("--storage", default=None, help="the sweep's storage URL (default: an SQLite file in --out)")
    p.add_argument("--jobs", type=int, default=1, help="processes side by side (one math thread each)")
    p.add_argument("--profile", default="paper", choices=("paper", "small"),
                   help="paper: the study (full and screening runs); small: a tiny run on digits")
    p.add_argument("--device", default="auto")
    p.add_argument("--list", action="store_true", help="list the pending runs and exit")
    p.add_argument("--table", action="store_true", help="print the study's table from the records and exit")
    args = p.parse_args(argv)
    try:
        if args.list:
            for r in pending(args.out, args.profile):
                print(r.key)
            return 0
        if args.table:
            print(format_study(study_table(load_records(args.out, EXPERIMENT))))
            return 0
        run_study(args.out, args.checkpoints, args.jobs, args.profile, args.device, storage=args.storage)
        return 0
    except (ValueError, RuntimeError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
