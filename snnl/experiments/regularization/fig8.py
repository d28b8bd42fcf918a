"""Fig. 8 (paper Section 4): train and test cross-entropy and accuracy over a long training,
baseline vs entangled (SVHN, two runs each): the entangled model overfits later and less.
:func:`figure8`; SVHN is replaced by Fashion-MNIST where it cannot be loaded (labelled as a
substitute, with the settings of the profile's ``substitute``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snnl.data import Dataset
from snnl.experiments.common import PAPER_RECIPE, find_record, load_or_substitute, profile_values, train_recorded
from snnl.experiments.common.checkpoints import model_checkpoint
from snnl.experiments.common.rows import NOT_RUN, all_hold, fmt_ci, judged, report_item
from snnl.stats import compare
from snnl.experiments.regularization.table1 import ENTANGLED_ALPHA, variant_name
from snnl.results import load_records
from snnl.sweeps import Grid, Task
from snnl.train import TrainConfig

PAPER = {"Fig. 8": "entangled overfits ~5,000 steps later, and less"}


# Fig. 8: a long training. "substitute": the settings that replace the profile's where its dataset
# cannot be loaded. On all 60,000 Fashion-MNIST images the Table 1 CNN does not overfit within
# 14,000 steps (its test CE is lowest at step 13,500-14,000 in every results/paper/table1 run); on
# 6,000 of them (as the Table 1 study's wide CNN) it trains 600 epochs in 14,000 steps, so that
# both variants overfit within the run and the claim (when, and how much) can be read.
PROFILES_FIG8 = {
    "small": dict(dataset="digits", n_train=300, steps=400, batch_size=64, lr=1e-3, eval_every=20, log_every=50),
    "paper": dict(PAPER_RECIPE, dataset="svhn", steps=30000, eval_every=500,  # 30,000 steps: Fig. 8
                  substitute=dict(n_train=6000, steps=14000, eval_every=250, log_every=250)),
}
FIG8 = PROFILES_FIG8  # its former name


# ---- runs ----------------------------------------------------------------------------------------
@dataclass
class Figure8:
    """Learning curves averaged over runs, per variant (``"baseline"``, ``"entangled"``)."""

    dataset: str
    substitute_for: str | None
    data_note: str
    eval_step: list[int]
    curves: dict[str, dict[str, list[float]]]  # variant -> train_ce/test_ce/train_accuracy/test_accuracy
    alphas: dict[str, float]
    runs: int
    records: list[dict] = field(default_factory=list, repr=False)

    @classmethod
    def from_records(cls, records: list[dict]) -> Figure8:
        """The figure of committed ``fig8`` records (one run each), curves averaged per variant."""
        if not records:
            raise ValueError("Figure8.from_records: no records")
        by: dict[str, list[dict]] = {}
        for r in records:
            by.setdefault(variant_name(float(r["config"]["alpha"])), []).append(r)
        steps = min((r["history"]["eval_step"] for r in records), key=len)
        n = len(steps)
        curves = {v: {k: np.mean([r["history"][k][:n] for r in rs], axis=0).tolist()
                      for k in ("train_ce", "test_ce", "train_accuracy", "test_accuracy")} for v, rs in by.items()}
        c = records[0]["config"]
        return cls(records[0]["dataset"], c.get("substitute_for"), c.get("data_note", ""), list(steps), curves,
                   {v: float(rs[0]["config"]["alpha"]) for v, rs in by.items()}, min(len(rs) for rs in by.values()),
                   list(records))

    def overfitting(self) -> dict[str, dict[str, float]]:
        """Per variant: the step of the lowest test CE (where overfitting starts), the final gap
        test CE - train CE, the final and the best test accuracy."""
        out = {}
        for v, c in self.curves.items():
            i = int(np.argmin(c["test_ce"]))
            out[v] = {"min_test_ce_step": self.eval_step[i], "min_test_ce": c["test_ce"][i],
                      "final_gap": c["test_ce"][-1] - c["train_ce"][-1],
                      "final_test_accuracy": c["test_accuracy"][-1], "best_test_accuracy": max(c["test_accuracy"])}
        return out


def figure8(profile: str = "small", runs: int = 2, alphas=(0.0, ENTANGLED_ALPHA), seed0: int = 0, *,
            dataset: str | None = None, device: str = "auto", data: Dataset | None = None, out_dir=None,
            reuse: bool = False, progress: bool = True, substitute: bool = True, checkpoint_root=None,
            **overrides) -> Figure8:
    """Train baseline and entangled models for long (Fig. 8) and average their learning curves.

    ``runs`` seeds per alpha (the paper: two). At the paper profile SVHN is replaced by
    Fashion-MNIST where it cannot be loaded (``substitute_for``), with the profile's
    ``substitute`` settings (6,000 training images, 14,000 steps). With ``out_dir`` every run
    writes a ``fig8`` record; ``reuse`` takes runs with the same config from records there.
    ``checkpoint_root``: a checkpoint folder per run under it, so a killed run resumes.
    """
    params = {**profile_values(PROFILES_FIG8, profile)}
    sub_params = params.pop("substitute", {})
    params.update(overrides)
    if dataset is not None:
        params["dataset"] = dataset
    if data is None:
        sub_params = {k: v for k, v in sub_params.items() if k not in overrides}
        data, substitute_for, note = load_or_substitute(
            params["dataset"], n_train=params.get("n_train"), n_test=params.get("n_test"), seed=seed0,
            substitute=substitute, stand_in={k: v for k, v in sub_params.items() if k in ("n_train", "n_test")})
        if substitute_for and sub_params:
            params.update(sub_params)
            note += f", {params['n_train']:,} training images"
    else:
        substitute_for, note = None, ""
    params["dataset"] = data.name
    curves, names, records, steps = {}, {}, [], None
    for alpha in alphas:
        v = variant_name(alpha)
        runs_h = []
        for seed in range(seed0, seed0 + runs):
            cfg = TrainConfig(**params, alpha=float(alpha), seed=seed, device=device, profile=profile,
                              experiment="fig8")
            extra = {"substitute_for": substitute_for, "data_note": note}
            rec = find_record(out_dir, "fig8", {**asdict(cfg), **extra}) if reuse else None
            if rec is None:
                ckpt = None if checkpoint_root is None else model_checkpoint(checkpoint_root, "fig8", cfg.dataset,
                                                                             alpha, seed)
                rec = train_recorded(cfg, data, out_dir, extra, progress=progress, checkpoint_dir=ckpt).record
            records.append(rec)
            runs_h.append(rec["history"])
        steps = runs_h[0]["eval_step"]
        curves[v] = {k: np.mean([h[k] for h in runs_h], axis=0).tolist()
                     for k in ("train_ce", "test_ce", "train_accuracy", "test_accuracy")}
        names[v] = float(alpha)
    return Figure8(data.name, substitute_for, note, steps, curves, names, runs, records)


# ---- figure --------------------------------------------------------------------------------------
def plot_figure8(f8: Figure8):
    """Fig. 8: accuracy (left) and cross-entropy on training and test data (right), per step."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = {"baseline": "tab:blue", "entangled": "tab:red", "disentangled": "tab:green"}
    for v, c in f8.curves.items():
        col = colors[v]
        a1.plot(f8.eval_step, [100 * x for x in c["test_accuracy"]], color=col, label=f"{v} test")
        a1.plot(f8.eval_step, [100 * x for x in c["train_accuracy"]], color=col, ls=":", label=f"{v} train")
        a2.plot(f8.eval_step, c["test_ce"], color=col, label=f"{v} test")
        a2.plot(f8.eval_step, c["train_ce"], color=col, ls=":", label=f"{v} train")
    data = f8.dataset + (f", substitute for {f8.substitute_for}" if f8.substitute_for else "")
    a1.set(xlabel="training step", ylabel="accuracy (%)", title=f"Fig. 8: accuracy ({data})")
    a2.set(xlabel="training step", ylabel="cross-entropy", yscale="log",
           title=f"cross-entropy, {f8.runs} run(s) averaged")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- the reproduction report's rows ---------------------------------------------------------------
def overfitting_of(record: dict) -> tuple[int, float]:
    """One run's numbers for Fig. 8's claim: the step of its lowest test cross-entropy (where it
    starts to overfit) and its final test - train cross-entropy gap."""
    h = record["history"]
    i = int(np.argmin(h["test_ce"]))
    return h["eval_step"][i], h["test_ce"][-1] - h["train_ce"][-1]


def fig8_items(recs):
    name, paper = "Fig. 8: overfitting over long training", PAPER["Fig. 8"]
    crit = ("entangled vs baseline over the runs: the step of the lowest test CE later (95% CI of the difference "
            "above 0) and the final test - train CE gap smaller (95% CI below 0); paired by seed, t-test")
    rows = []
    for real in (True, False):
        rs = [r for r in recs if bool((r.get("config") or {}).get("substitute_for")) != real]
        base = [r for r in rs if float(r["config"]["alpha"]) == 0]
        ent = [r for r in rs if float(r["config"]["alpha"]) > 0]
        title = name + (" (svhn)" if real else "")
        if not (base and ent):  # both rows always: the count of paper items does not depend on the records
            rows.append(report_item("Fig. 8", title, paper, "fig8", rs, criterion=crit, status=NOT_RUN,
                                    note="needs both variants" if rs else ""))
            continue
        on_b, on_e = ([overfitting_of(r) for r in v] for v in (base, ent))
        seeds = [[r["seed"] for r in v] for v in (ent, base)]
        cs = compare([x for x, _ in on_e], [x for x, _ in on_b], *seeds)
        cg = compare([g for _, g in on_e], [g for _, g in on_b], *seeds)
        s_step, s_gap = judged(cs.diff_ci), judged(cg.diff_ci, higher=False)
        status = all_hold([s_step, s_gap])
        c = rs[0]["config"]
        reduced = (f"{c.get('n_train'):,} training images, " if c.get("n_train") else "") + \
            f"{c.get('steps'):,} of the paper's {PROFILES_FIG8['paper']['steps']:,} steps"
        rows.append(report_item(
            "Fig. 8", title, paper, "fig8", rs, criterion=crit, status=status, reduced="" if real else reduced,
            ours=(f"lowest test CE at step {cs.a.mean:,.0f} vs {cs.b.mean:,.0f} ({cs.diff:+,.0f}, "
                  f"{fmt_ci(cs.diff_ci, ',.0f')}); final gap {cg.a.mean:.3f} vs {cg.b.mean:.3f} ({cg.diff:+.3f}, "
                  f"{fmt_ci(cg.diff_ci)})"),
            runs=f"{len(ent)} + {len(base)}",
            spread=(f"steps {', '.join(str(x) for x, _ in on_e)} / {', '.join(str(x) for x, _ in on_b)}"),
            note=("per run: the step of its lowest test CE, its final test - train CE gap; entangled / baseline. "
                  "Context, not judged: lowest test CE "
                  f"{np.mean([min(r['history']['test_ce']) for r in ent]):.3f} vs "
                  f"{np.mean([min(r['history']['test_ce']) for r in base]):.3f}"
                  + ("" if not all(r["history"].get("test_accuracy") for r in rs) else
                     f", final test accuracy {100 * np.mean([r['history']['test_accuracy'][-1] for r in ent]):.1f}% "
                     f"vs {100 * np.mean([r['history']['test_accuracy'][-1] for r in base]):.1f}%")
                  + " (a later minimum of a higher curve is slower fitting, not better generalisation)")))
    return rows


def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Fig. 8, from the paper-profile records by experiment."""
    return fig8_items(records.get("fig8", []))


# ---- the sweep: every (alpha, seed) run, on any number of workers ------------------------------------
SWEEP_ALPHAS, SWEEP_SEEDS = (0.0, ENTANGLED_ALPHA), (0, 1)  # the paper: 2 runs each


def _sweep_plan(profile: str, out) -> list[Task]:
    return [Task(f"{variant_name(a)}_s{s}", variant_name(a), {"alpha": a, "seed": s})
            for s in SWEEP_SEEDS for a in SWEEP_ALPHAS]


def _sweep_done(task, profile: str, out) -> dict | None:
    recs = [r for r in load_records(out, "fig8", profile=profile) if r["seed"] == task.params["seed"]
            and float(r["config"]["alpha"]) == task.params["alpha"]] if Path(out).exists() else []
    return recs[-1] if recs else None


def _sweep_run(task, profile: str, out, checkpoint_dir, device: str) -> dict:
    f8 = figure8(profile, runs=1, alphas=(task.params["alpha"],), seed0=task.params["seed"], device=device,
                 out_dir=out, reuse=True, progress=False, checkpoint_root=Path(checkpoint_dir).parent)
    return f8.records[0]


SWEEP = Grid(plan=_sweep_plan, done=_sweep_done, run=_sweep_run, profiles=tuple(PROFILES_FIG8),
             value=lambda rec: rec["metrics"]["test_accuracy"],
             description="Fig. 8: baseline and entangled, 2 seeds each, trained long")
