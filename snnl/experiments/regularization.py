"""Entanglement as a regulariser (paper Section 4: Table 1, Figs. 7 and 8).

Eq. 3, ``L = CE - alpha * sum_i l_sn(f_i(x), y)``, with ``alpha > 0`` *maximising* the
entanglement of the hidden layers (the authors' code: alpha = 10, T0 = 100, learned T).

* Table 1: test accuracy of the CNN (MNIST, Fashion-MNIST, SVHN; Adam 1e-4, batch 256, 14,000
  steps, 4 runs per variant) and the ResNet (CIFAR-10), baseline (alpha = 0) vs entangled. The
  paper: every entangled variant is (marginally) better. :func:`table1` runs the variants and
  writes one record per run (experiment ``table1``); :func:`table1_summary` turns records into
  best / mean / std per dataset and variant next to :data:`PAPER_TABLE1`.
* Fig. 7: test accuracy against alpha over a hyper-parameter search (64 ResNet runs on
  CIFAR-10): large alpha (maximising entanglement) is best. :func:`figure7` runs a grid of
  alphas, negative and positive.
* Fig. 8: train and test cross-entropy and accuracy over a long training, baseline vs entangled
  (SVHN, two runs each): the entangled model overfits later and less. :func:`figure8`; SVHN is
  replaced by Fashion-MNIST where it cannot be loaded (labelled as a substitute).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from snnl.data import Dataset
from snnl.experiments.checkpoints import model_checkpoint
from snnl.experiments.common import PAPER_RECIPE, find_record, load_or_substitute, profile_values, train_recorded
from snnl.experiments.representations import RESNET_PAPER
from snnl.train import TrainConfig, TrainingDiverged, load_for, train

# Table 1 of the paper, in percent: (entangled, baseline). "runs": runs per variant.
PAPER_TABLE1 = {
    "mnist": {"model": "cnn", "best": (99.23, 98.83), "mean": (99.16, 98.82), "runs": 4},
    "fashion-mnist": {"model": "cnn", "best": (91.48, 90.42), "mean": (91.06, 90.25), "runs": 4},
    "svhn": {"model": "cnn", "best": (88.81, 87.63), "mean": (89.90, 89.71), "runs": 4,
             "note": "(sic): the paper's SVHN averages exceed its best values and repeat CIFAR-10's "
                     "averages, a typo in the paper"},
    "cifar10": {"model": "resnet", "best": (91.22, 90.78), "mean": (89.90, 89.713), "runs": 100},
}
PAPER = {"Table 1": PAPER_TABLE1, "Fig. 7": "large alpha (maximising entanglement) is best",
         "Fig. 8": "entangled overfits ~5,000 steps later, and less"}
ENTANGLED_ALPHA = 10.0  # the authors' code: factor -10 in CE + factor * SNNL

# ---- profiles -----------------------------------------------------------------------------------
# The training recipe of a Table 1 run, per profile and dataset ("*": every dataset not named).
# "paper": Table 1's footnotes (the CNN run is the TrainConfig of `python -m snnl train --dataset
# mnist --alpha 10 --steps 14000 --batch-size 256 --lr 1e-4 --profile paper --experiment table1`;
# CIFAR-10: the ResNet of the footnote). "small": the embedded digits, a few hundred steps on a
# CPU, a larger learning rate to get somewhere in that time.
CNN_PAPER = dict(model="cnn", **PAPER_RECIPE, eval_every=500)
SMALL = dict(dataset="digits", model="cnn", steps=200, batch_size=64, lr=1e-3, eval_every=50, log_every=25)
PROFILES_TABLE1 = {"small": {"*": SMALL}, "paper": {"*": CNN_PAPER, "cifar10": RESNET_PAPER}}


# Fig. 7, per profile: the grid of alphas, the data (the paper profile: the CNN on Fashion-MNIST,
# standing in for the CIFAR-10 ResNet search)
PROFILES_FIG7 = {
    "small": dict(alphas=(-10.0, -1.0, 0.0, 1.0, 10.0, 100.0), dataset="digits", substitute_for=None),
    "paper": dict(alphas=(-30.0, -10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0, 30.0, 100.0), dataset="fashion-mnist",
                  substitute_for="the CIFAR-10 ResNet search (Fig. 7)"),
}
FIG7_ALPHAS = {p: v["alphas"] for p, v in PROFILES_FIG7.items()}


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


# ---- runs (each writes one record per trained model) ---------------------------------------------
def table1_config(dataset: str, alpha: float, profile: str = "small", seed: int = 0, device: str = "auto",
                  **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of one Table 1 run (the recipe of :data:`PROFILES_TABLE1`)."""
    recipes = profile_values(PROFILES_TABLE1, profile)
    recipe = recipes.get(dataset, recipes["*"])
    cfg = {**recipe, "dataset": dataset or recipe.get("dataset", dataset), **overrides}
    if alpha == 0:  # no regulariser is trained: every baseline is the same run
        cfg["regularizer"] = "snnl"
    return TrainConfig(**cfg, alpha=float(alpha), seed=seed, device=device, profile=profile, experiment="table1")


def regularizer_of(record: dict) -> str:
    """The regulariser a Table 1 record was trained with; ``"snnl"`` for every baseline."""
    cfg = record["config"]
    return "snnl" if float(cfg["alpha"]) == 0 else cfg.get("regularizer", "snnl")


def table1(dataset: str = "digits", profile: str = "small", runs: int = 2, alphas=(0.0, ENTANGLED_ALPHA),
           seed0: int = 0, *, device: str = "auto", data: Dataset | None = None, out_dir=None,
           checkpoint_root=None, reuse: bool = False, progress: bool = True, **overrides) -> list[dict]:
    """Train ``runs`` models per alpha on ``dataset`` (Table 1); return one record per run.

    Seeds are ``seed0 .. seed0 + runs - 1`` for every alpha. With ``out_dir`` each run writes a
    record there (experiment ``table1``); with ``reuse`` a run whose record is already there (same
    config, any device) is not trained again. ``checkpoint_root``: a checkpoint folder per run
    under it, so a killed sweep resumes. ``overrides``: any :class:`TrainConfig` field.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    records, cache = [], {}
    for alpha in alphas:
        for seed in range(seed0, seed0 + runs):
            cfg = table1_config(dataset, alpha, profile, seed, device, **overrides)
            if reuse and (rec := find_record(out_dir, "table1", asdict(cfg))) is not None:
                records.append(rec)
                continue
            run_data = data if data is not None else _load(cfg, cache)
            ckpt = None if checkpoint_root is None else model_checkpoint(checkpoint_root, "table1", cfg.dataset, alpha, seed)
            res = train(cfg, run_data, out_dir=out_dir, checkpoint_dir=ckpt, progress=progress)
            records.append(res.record)
    return records


def _load(cfg: TrainConfig, cache: dict) -> Dataset:
    """The config's dataset, loaded once per sweep (per seed when a random subset is asked for)."""
    key = (cfg.dataset, cfg.size, cfg.channels, cfg.n_train, cfg.n_test,
           cfg.seed if (cfg.n_train or cfg.n_test) else None)
    if key not in cache:
        cache[key] = load_for(cfg)
    return cache[key]


def _variant(alpha: float) -> str:
    return "baseline" if alpha == 0 else ("entangled" if alpha > 0 else "disentangled")


def figure7(profile: str = "small", alphas=None, runs: int = 1, seed0: int = 0, *,
            dataset: str | None = None, device: str = "auto", data: Dataset | None = None,
            out_dir=None, reuse: bool = False, progress: bool = True, **overrides) -> dict:
    """Test accuracy for each alpha of a grid (Fig. 7), ``runs`` seeds each.

    The paper's search tuned alpha (with the learning rate and initial temperature) over 64
    ResNet runs on CIFAR-10; here a fixed grid of alphas with the Table 1 recipe of ``profile``
    (the CNN on ``dataset``: digits at the small profile, Fashion-MNIST at the paper profile,
    labelled as standing in for the CIFAR-10 ResNet search). A run whose loss diverges is kept
    with accuracy None. Returns ``{"alpha": [...], "test_accuracy": [...], "seed": [...],
    "diverged": [...], "dataset", "substitute_for", "records"}``.
    """
    p = profile_values(PROFILES_FIG7, profile)
    alphas = p["alphas"] if alphas is None else alphas
    dataset = dataset or p["dataset"]
    out = {"alpha": [], "test_accuracy": [], "seed": [], "diverged": [], "records": [], "dataset": dataset,
           "substitute_for": p["substitute_for"]}
    cache = {}
    for alpha in alphas:
        for seed in range(seed0, seed0 + runs):
            cfg = table1_config(dataset, alpha, profile, seed, device, **overrides)
            cfg.experiment = "fig7"
            extra = {"substitute_for": out["substitute_for"]}
            rec = find_record(out_dir, "fig7", {**asdict(cfg), **extra}) if reuse else None
            try:
                if rec is None:
                    rec = train_recorded(cfg, data if data is not None else _load(cfg, cache), out_dir, extra,
                                         progress=progress).record
                acc, diverged = rec["metrics"]["test_accuracy"], False
                out["records"].append(rec)
            except TrainingDiverged:
                acc, diverged = None, True
            out["alpha"].append(float(alpha)); out["seed"].append(seed)
            out["test_accuracy"].append(acc); out["diverged"].append(diverged)
    return out


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
        data, substitute_for, note = load_or_substitute(params["dataset"], n_train=params.get("n_train"),
                                                        n_test=params.get("n_test"), seed=seed0,
                                                        substitute=substitute)
        if substitute_for and sub_params:
            params.update({k: v for k, v in sub_params.items() if k not in overrides})
            data, substitute_for, note = load_or_substitute(params["dataset"], n_train=params.get("n_train"),
                                                            n_test=params.get("n_test"), seed=seed0)
            note += f", {params['n_train']:,} training images"
    else:
        substitute_for, note = None, ""
    params["dataset"] = data.name
    curves, names, records, steps = {}, {}, [], None
    for alpha in alphas:
        v = _variant(alpha)
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


# ---- tables and figures -------------------------------------------------------------------------
def table1_summary(records: list[dict]) -> list[dict]:
    """Per (profile, dataset, alpha, regulariser): best / mean / std test accuracy in percent over
    the runs, with the paper's numbers for the baseline and the entangled variant (else None)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["profile"], r["dataset"], float(r["config"]["alpha"]), regularizer_of(r))
        groups.setdefault(key, []).append(r)
    rows = []
    for (profile, dataset, alpha, reg), rs in sorted(groups.items()):
        acc = np.array([100.0 * r["metrics"]["test_accuracy"] for r in rs])
        paper = PAPER_TABLE1.get(dataset)
        variant = _variant(alpha) + ("" if reg == "snnl" else f" ({reg})")  # another regulariser: its own row
        col = {"entangled": 0, "baseline": 1}.get(variant)
        rows.append({
            "profile": profile, "dataset": dataset, "variant": variant, "alpha": alpha,
            "steps": sorted({r["config"]["steps"] for r in rs}), "runs": len(rs),
            "seeds": sorted(r["seed"] for r in rs),
            "best": float(acc.max()), "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
            "paper_best": paper["best"][col] if paper and col is not None else None,
            "paper_mean": paper["mean"][col] if paper and col is not None else None,
            "paper_runs": paper["runs"] if paper and col is not None else None,
            "note": paper.get("note", "") if paper else "",
        })
    return rows


def table1_missing(records: list[dict], datasets=tuple(PAPER_TABLE1), alphas=(0.0, ENTANGLED_ALPHA)) -> list[str]:
    """``"dataset variant"`` of Table 1 with no record among ``records`` (e.g. the paper-profile
    records under ``results/``)."""
    have = {(r["dataset"], float(r["config"]["alpha"])) for r in records if regularizer_of(r) == "snnl"}
    return [f"{d} {_variant(a)} (alpha={a:g})" for d in datasets for a in alphas if (d, float(a)) not in have]


def format_table1(rows: list[dict]) -> str:
    """A Markdown table: ours (best, mean ± std, runs) next to the paper's (best, mean, runs)."""
    def pct(v):
        return "–" if v is None else f"{v:.2f}"

    out = ["| profile | dataset | variant | alpha | steps | runs | best | paper best | mean ± std | paper mean |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        std = "" if r["std"] is None else f" ± {r['std']:.2f}"
        sic = " (sic)" if "sic" in r["note"] else ""
        runs = f"{r['runs']}" + (f" (paper {r['paper_runs']})" if r["paper_runs"] else "")
        out.append(f"| {r['profile']} | {r['dataset']} | {r['variant']} | {r['alpha']:g} | "
                   f"{', '.join(map(str, r['steps']))} | {runs} | {r['best']:.2f} | {pct(r['paper_best'])} | "
                   f"{r['mean']:.2f}{std} | {pct(r['paper_mean'])}{sic} |")
    return "\n".join(out)


def table_table1(records: list[dict]) -> str:
    """Table 1 of ``records`` (this run's, or the committed paper-profile ones) next to the paper's:
    :func:`format_table1` of :func:`table1_summary`."""
    return format_table1(table1_summary(records))


def plot_figure7(fig7: dict, ax=None):
    """Scatter of test accuracy against alpha (symmetric-log axis), as in Fig. 7."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    a = np.array(fig7["alpha"])
    acc = np.array([np.nan if v is None else 100 * v for v in fig7["test_accuracy"]])
    ok = ~np.isnan(acc)
    ax.scatter(a[ok], acc[ok], c=np.where(a[ok] > 0, "tab:red", np.where(a[ok] < 0, "tab:green", "tab:blue")),
               s=25, zorder=3)
    if (~ok).any():
        ax.scatter(a[~ok], np.full((~ok).sum(), np.nanmin(acc) if ok.any() else 0), marker="x", c="k",
                   label="diverged")
        ax.legend(fontsize=8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="0.8", lw=1, zorder=0)
    ax.set(xlabel="alpha (> 0: maximise entanglement)", ylabel="test accuracy (%)",
           title=f"Fig. 7: accuracy against alpha ({fig7['dataset']})")
    return ax


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
