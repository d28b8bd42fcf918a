"""Fig. 7 (paper Section 4): test accuracy against alpha over a hyper-parameter search (64 ResNet
runs on CIFAR-10, a batched Gaussian-process bandit search over the learning rate, alpha of both
signs and the initial temperature): the search "converged to large negative values of alpha", the
paper's sign for maximising entanglement.

* The search as the paper ran it: the sweep ``fig7`` (:data:`SWEEP`, :mod:`snnl.sweeps`), Optuna's
  ``GPSampler`` (q-batch expected improvement over the running trials: a batched GP search) over
  alpha, the learning rate and the initial temperature; :data:`PROFILES_SEARCH`. The paper profile
  stands in for the CIFAR-10 ResNet with the Table 1 CNN on Fashion-MNIST at the Table 1 study's
  3,000-step screening length (about 5 CPU-minutes a run). :func:`plot_search`, :func:`search_summary`.
  ``python -m snnl sweep fig7 --profile paper --workers 2``
* A one-dimensional grid of alphas with the Table 1 recipe (:func:`figure7`), kept as a variant.

The sign of alpha: the paper writes CE + alpha * SNNL, we write CE - alpha * SNNL, so the paper's
alpha is minus ours (:func:`paper_alpha`); plots of the search use the paper's sign.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from scipy import stats as sstats

from snnl.data import Dataset
from snnl.experiments.common import finish_run, find_record, profile_values, train_recorded
from snnl.experiments.common.rows import INCONCLUSIVE, VARIANT, fmt_ci, judged, report_item
from snnl.results import Run, load_records
from snnl.stats import diff_proportions
from snnl.experiments.regularization.table1 import load_cached, table1_config
from snnl.sweeps import Search, load_optuna
from snnl.train import TrainingDiverged, load_for

PAPER = {"Fig. 7": "large alpha (maximising entanglement) is best"}
N_TEST = {"fashion-mnist": 10_000, "mnist": 10_000, "digits": 500, "cifar10": 10_000}  # test images per dataset


# Fig. 7, per profile: the grid of alphas, the data (the paper profile: the CNN on Fashion-MNIST,
# standing in for the CIFAR-10 ResNet search)
PROFILES_FIG7 = {
    "small": dict(alphas=(-10.0, -1.0, 0.0, 1.0, 10.0, 100.0), dataset="digits", substitute_for=None),
    "paper": dict(alphas=(-30.0, -10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0, 30.0, 100.0), dataset="fashion-mnist",
                  substitute_for="the CIFAR-10 ResNet search (Fig. 7)"),
}
FIG7_ALPHAS = {p: v["alphas"] for p, v in PROFILES_FIG7.items()}


# ---- runs ----------------------------------------------------------------------------------------
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
                    rec = train_recorded(cfg, data if data is not None else load_cached(cfg, cache), out_dir, extra,
                                         progress=progress).record
                acc, diverged = rec["metrics"]["test_accuracy"], False
                out["records"].append(rec)
            except TrainingDiverged:
                acc, diverged = None, True
            out["alpha"].append(float(alpha)); out["seed"].append(seed)
            out["test_accuracy"].append(acc); out["diverged"].append(diverged)
    return out


# ---- figure --------------------------------------------------------------------------------------
def plot_figure7(fig7: dict, ax=None):
    """Scatter of test accuracy against alpha (symmetric-log axis), as in Fig. 7; the colour says
    what alpha does to the hidden layers (the legend: maximises, none, minimises entanglement)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    a = np.array(fig7["alpha"])
    acc = np.array([np.nan if v is None else 100 * v for v in fig7["test_accuracy"]])
    ok = ~np.isnan(acc)
    for keep, color, what in ((a > 0, "tab:red", "alpha > 0: maximises entanglement"),
                              (a == 0, "tab:blue", "alpha = 0: cross-entropy only"),
                              (a < 0, "tab:green", "alpha < 0: minimises entanglement")):
        if (keep & ok).any():
            ax.scatter(a[keep & ok], acc[keep & ok], c=color, s=25, zorder=3, label=what)
    if (~ok).any():
        ax.scatter(a[~ok], np.full((~ok).sum(), np.nanmin(acc) if ok.any() else 0), marker="x", c="k",
                   label="diverged (no accuracy)")
    ax.legend(fontsize=8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="0.8", lw=1, zorder=0)
    ax.set(xlabel="alpha (> 0: maximise entanglement)", ylabel="test accuracy (%)",
           title=f"Fig. 7: accuracy against alpha ({fig7['dataset']})")
    return ax


# ---- the reproduction report's rows ---------------------------------------------------------------
def fig7_items(recs):
    name, paper = "Fig. 7 variant: a grid of alphas, one run each", PAPER["Fig. 7"]
    crit = ("the best alpha > 0 (ours: maximising entanglement, the paper's alpha < 0) beats the best alpha <= 0: "
            "95% CI of the difference of their test accuracies above 0 (Newcombe, over the test images of one run "
            "each: seed-to-seed spread not included)")
    if not recs:
        return [report_item("Fig. 7", name + " (cifar10)", paper, "fig7", criterion=crit, kind=VARIANT)]
    acc: dict[float, list[float]] = {}
    for r in recs:
        acc.setdefault(float(r["config"]["alpha"]), []).append(100 * r["metrics"]["test_accuracy"])
    mean = {a: sum(v) / len(v) for a, v in acc.items()}
    flat = [x for v in acc.values() for x in v]
    pos, rest = [a for a in mean if a > 0], [a for a in mean if a <= 0]
    ours = ", ".join(f"{a:g}: {mean[a]:.2f}" for a in sorted(mean))
    status, d_text = INCONCLUSIVE, "needs alphas on both sides of 0"
    if pos and rest:
        bp, br = max(pos, key=mean.get), max(rest, key=mean.get)
        n = N_TEST.get(recs[0]["dataset"], 10_000)
        d, ci = diff_proportions(mean[bp] / 100, n, mean[br] / 100, n)
        status = judged(ci)
        d_text = (f"best alpha > 0: {bp:g} ({mean[bp]:.2f}%) vs best alpha <= 0: {br:g} ({mean[br]:.2f}%), "
                  f"{100 * d:+.2f} points ({fmt_ci(tuple(100 * x for x in ci), '.2f')})")
    return [report_item("Fig. 7", name, paper, "fig7", recs, ours=d_text, status=status, criterion=crit, kind=VARIANT,
                        spread=f"{min(flat):.2f}–{max(flat):.2f}%",
                        reduced=f"a grid of {len(acc)} alphas, one run each, not the paper's 64-run search",
                        note=f"mean test accuracy (%) per alpha: {ours}")]





# ---- the search as the paper ran it: a batched Gaussian-process search --------------------------------
SEARCH_EXPERIMENT = "fig7_search"
# the search space, alpha in our sign (the paper's alpha is minus ours): both signs, as the paper
SEARCH_SPACE = {"alpha": (-100.0, 100.0), "lr": (1e-5, 1e-2), "temperature": (1.0, 1000.0)}
PAPER_TRIALS = 64
PROFILES_SEARCH = {
    "small": dict(dataset="digits", n_trials=6, n_startup=3, steps=100, eval_every=100, substitute_for=None),
    "paper": dict(dataset="fashion-mnist", n_trials=PAPER_TRIALS, n_startup=10, steps=3000, eval_every=1000,
                  substitute_for="cifar10, the Table 1 CNN at 3,000 steps for the ResNet"),
}


def paper_alpha(alpha):
    """The paper's alpha for our ``alpha``: it writes CE + alpha * SNNL, we write CE - alpha * SNNL."""
    return -np.asarray(alpha, dtype=float) if np.ndim(alpha) else -float(alpha)


def search_space(trial) -> dict:
    """The parameters of one trial (Optuna ``suggest_*``): alpha (linear, both signs), the learning
    rate and the initial temperature (log scale)."""
    lo, hi = SEARCH_SPACE["alpha"]
    return {"alpha": trial.suggest_float("alpha", lo, hi),
            "lr": trial.suggest_float("lr", *SEARCH_SPACE["lr"], log=True),
            "temperature": trial.suggest_float("temperature", *SEARCH_SPACE["temperature"], log=True)}


def search_config(params: dict, number: int, profile: str = "small", device: str = "auto"):
    """The :class:`~snnl.train.TrainConfig` of trial ``number`` (its seed) with ``params``."""
    p = profile_values(PROFILES_SEARCH, profile)
    cfg = table1_config(p["dataset"], params["alpha"], profile, number, device, lr=float(params["lr"]),
                        temperature=float(params["temperature"]), steps=p["steps"], eval_every=p["eval_every"])
    cfg.experiment = SEARCH_EXPERIMENT
    return cfg


def run_trial(params: dict, number: int, profile: str = "small", out_dir=None, checkpoint_dir=None,
              device: str = "auto") -> dict:
    """Train one trial of the search and write its record; a run whose loss diverges gets a record
    too (``metrics.diverged``, no accuracy)."""
    cfg = search_config(params, number, profile, device)
    extra = {"substitute_for": profile_values(PROFILES_SEARCH, profile)["substitute_for"]}
    data = load_for(cfg)
    try:
        return train_recorded(cfg, data, out_dir, extra, checkpoint_dir=checkpoint_dir, checkpoint_every=500,
                              progress=False).record
    except TrainingDiverged as e:
        run = Run(SEARCH_EXPERIMENT, cfg.profile, data.name, cfg.seed, {**asdict(cfg), **extra})
        return finish_run(run, {"diverged": True, "test_accuracy": None, "error": " ".join(str(e).split())}, out_dir)


def _sampler(profile: str):
    """The GP sampler of a worker. Unseeded: workers with one seed draw the same random start-up
    trials, each of them (seen in the first paper-profile trials, 0 and 1, twice the same parameters)."""
    return load_optuna().samplers.GPSampler(n_startup_trials=profile_values(PROFILES_SEARCH, profile)["n_startup"])


def search_records(out_dir, profile: str = "paper") -> list[dict]:
    """The search's records under ``out_dir`` at ``profile``, in trial order."""
    recs = load_records(out_dir, SEARCH_EXPERIMENT, profile=profile) if out_dir is not None else []
    return sorted(recs, key=lambda r: r["started_at"])  # trial numbers restart with each new storage


SWEEP = Search(space=search_space, run=run_trial, value=lambda rec: rec["metrics"].get("test_accuracy"),
               n_trials={p: v["n_trials"] for p, v in PROFILES_SEARCH.items()}, sampler=_sampler,
               records=lambda out, profile: search_records(out, profile), failed_value=0.1,  # chance: 10 classes
               folder=SEARCH_EXPERIMENT,
               description="Fig. 7: a batched GP search over alpha (both signs), learning rate, initial temperature")


def search_summary(records: list[dict], top: int | None = None) -> dict:
    """What the search found, from its records (trial order):

    * ``trials``: number (the trial's place in the search, by start time), run (its name in the
      records), alpha (ours), paper alpha, lr, T0, test accuracy (%, None: diverged);
    * ``best``: the ``top`` best trials (default: an eighth, at least 3) -- where the search converged:
      their paper alphas, median, and how many have paper alpha < 0 (maximising entanglement);
    * ``effect``: an ordinary least-squares estimate of test accuracy (points) for maximising
      (our alpha > 0) against minimising (alpha < 0) entanglement, the learning rate (log, and its
      square) and T0 (log) held fixed; its 95% t-interval and p (None with too few trials of a sign).
    """
    rows = []
    for i, r in enumerate(records):
        c, m = r["config"], r["metrics"]
        acc = m.get("test_accuracy")
        rows.append({"number": i, "run": r.get("trial", {}).get("run"), "alpha": float(c["alpha"]),
                     "paper_alpha": paper_alpha(float(c["alpha"])), "lr": float(c["lr"]),
                     "temperature": float(c["temperature"]), "accuracy": None if acc is None else 100 * acc})
    ok = [t for t in rows if t["accuracy"] is not None]
    out = {"trials": rows, "n": len(rows), "diverged": len(rows) - len(ok), "best": None, "effect": None,
           "diverged_by_sign": {s: sum(t["accuracy"] is None and (t["alpha"] > 0) == (s == "maximise")
                                       for t in rows) for s in ("maximise", "minimise")}}
    if ok:
        k = top or max(3, len(ok) // 8)
        best = sorted(ok, key=lambda t: -t["accuracy"])[:k]
        pa = [t["paper_alpha"] for t in best]
        out["best"] = {"k": len(best), "paper_alpha": pa, "median": float(np.median(pa)),
                       "maximising": sum(a < 0 for a in pa), "best": best[0]}
    pos, neg = [t for t in ok if t["alpha"] > 0], [t for t in ok if t["alpha"] < 0]
    if len(pos) >= 2 and len(neg) >= 2 and len(ok) >= 6:
        z = np.log10([t["lr"] for t in ok])
        x = np.column_stack([np.ones(len(ok)), [t["alpha"] > 0 for t in ok], z, z ** 2,
                             np.log10([t["temperature"] for t in ok])])
        y = np.array([t["accuracy"] for t in ok])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        dof = len(y) - np.linalg.matrix_rank(x)
        if dof > 0:
            resid = y - x @ coef
            cov = (resid @ resid / dof) * np.linalg.pinv(x.T @ x)
            se = float(np.sqrt(cov[1, 1]))
            tq = sstats.t.ppf(0.975, dof)
            p = float(2 * sstats.t.sf(abs(coef[1]) / se, dof)) if se > 0 else float("nan")
            out["effect"] = {"diff": float(coef[1]), "ci": (float(coef[1] - tq * se), float(coef[1] + tq * se)),
                             "p": p, "dof": int(dof), "n_max": len(pos), "n_min": len(neg)}
    return out


def plot_search(summary: dict, ax=None, title: str | None = None):
    """Fig. 7 as the paper draws it: test accuracy against the paper's alpha (< 0: maximising
    entanglement), one point per trial coloured by its order in the search; diverged runs as
    crosses along the bottom."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    t = summary["trials"]
    ok = [r for r in t if r["accuracy"] is not None]
    bad = [r for r in t if r["accuracy"] is None]
    n = max([1] + [r["number"] for r in t])  # the colour scale: the trials' order in the search
    if ok:
        sc = ax.scatter([r["paper_alpha"] for r in ok], [r["accuracy"] for r in ok],
                        c=[r["number"] for r in ok], cmap="viridis", vmin=0, vmax=n, s=28, zorder=3,
                        edgecolors="k", linewidths=0.3)
        ax.figure.colorbar(sc, ax=ax, label="trial (order of the search)")
        if summary["best"]:
            b = summary["best"]["best"]
            ax.annotate("best", (b["paper_alpha"], b["accuracy"]), textcoords="offset points", xytext=(6, 4),
                        fontsize=8)
    if bad:
        floor = min([r["accuracy"] for r in ok], default=0)
        ax.scatter([r["paper_alpha"] for r in bad], [floor] * len(bad), marker="x", c="tab:red", zorder=3,
                   label=f"diverged ({len(bad)})")
        ax.legend(fontsize=8, loc="lower right")
    ax.axvline(0, color="0.7", lw=1, zorder=0)
    ax.set(xlabel="the paper's alpha (= -alpha here): < 0 maximises entanglement", ylabel="test accuracy (%)",
           title=title or "Fig. 7: the search, accuracy against alpha")
    return ax


def search_items(recs: list[dict]) -> list[dict]:
    """The report's Fig. 7 row, from the search's records."""
    name, paper = "Fig. 7: test accuracy against alpha (batched GP search)", PAPER["Fig. 7"]
    crit = ("the paper's claim: the search converges to maximising entanglement (the paper's alpha < 0), and "
            "maximising beats minimising: OLS estimate of test accuracy for our alpha > 0 against alpha < 0 "
            "(log learning rate, its square and log T0 held fixed; diverged trials left out), 95% t-interval "
            "above 0")
    if not recs:
        return [report_item("Fig. 7", name + " (cifar10)", paper, SEARCH_EXPERIMENT, criterion=crit)]
    s = search_summary(recs)
    b, e = s["best"], s["effect"]
    where = ("no trial finished" if b is None else
             f"the {b['k']} best trials at the paper's alpha {', '.join(f'{a:.0f}' for a in sorted(b['paper_alpha']))} "
             f"({b['maximising']} of {b['k']} maximising)")
    if e is None:
        ours, status = f"{where}; too few finished trials of each sign for an estimate", INCONCLUSIVE
    else:
        ours = (f"{where}; maximising vs minimising: {e['diff']:+.2f} points ({fmt_ci(e['ci'], '.2f')}, "
                f"p = {e['p']:.2g}; {e['n_max']} + {e['n_min']} trials)")
        status = judged(e["ci"])
    accs = [t["accuracy"] for t in s["trials"] if t["accuracy"] is not None]
    return [report_item("Fig. 7", name, paper, SEARCH_EXPERIMENT, recs, ours=ours, status=status, criterion=crit,
                        spread=f"{min(accs):.2f}–{max(accs):.2f}%" if accs else "–",
                        reduced=(f"{s['n']} of the paper's {PAPER_TRIALS} trials" if s["n"] < PAPER_TRIALS else ""),
                        note=f"{s['n']} trials, {s['diverged']} diverged "
                             f"({s['diverged_by_sign']['maximise']} maximising, "
                             f"{s['diverged_by_sign']['minimise']} minimising); the paper's alpha = -alpha here")]


def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Fig. 7, from the paper-profile records by experiment: the
    search (the paper item) and the grid of alphas (a variant)."""
    return search_items(records.get(SEARCH_EXPERIMENT, [])) + fig7_items(records.get("fig7", []))
