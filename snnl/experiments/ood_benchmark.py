"""Beyond the paper: OOD and adversarial detection on the field's standard metrics.

Section 5.3 of the paper argues that entangled hidden layers make outliers easier to recognise,
because they have "fewer than the normal number of neighbours from the predicted class"; it shows
t-SNE pictures and DkNN calibration plots, no detection metric. This benchmark scores the
baseline and the entangled model of each seed with seven detectors
(:mod:`snnl.experiments.ood_detectors`: DkNN credibility, the paper's neighbour fraction, and
MSP, energy, Mahalanobis, ODIN, KNN from ``pytorch-ood``) on AUROC, AUPR-IN, AUPR-OUT and
FPR@95TPR, for pairs in-distribution -> outliers: MNIST -> notMNIST, MNIST -> Fashion-MNIST,
Fashion-MNIST -> MNIST (SVHN -> CIFAR-10 for users with that data), and adversarial "outliers":
FGSM and BIM examples of the in-distribution test set at two eps (only successful ones, made from
correctly classified test points not used elsewhere).

Models. ``paper``: the authors' released recipe (cleverhans model zoo CNN, ``zoo`` in
:mod:`snnl.models`, 6 epochs, alpha 0 vs alpha 10 at a fixed T = 100), trained by the Table 1
study and loaded from its finished checkpoints ``<models>/<variant>_paper_s<seed>/checkpoint.pt``
(not the 14,000-step Table 1 CNN). ``small``: the same zoo model trained here for 150 steps on
scikit-learn digits, with pixel-shuffled digits and uniform noise as substitutes for a second
dataset.

One record per (in-distribution set, outlier set, variant, seed): ``experiment="ood_benchmark"``,
``dataset`` = the in-distribution set, ``config.outliers``, ``config.variant`` (baseline /
entangled), ``config.model_source``; ``metrics = {detector: {auroc, aupr_in, aupr_out, fpr95}}``.
Command line: ``python -m snnl.experiments.ood_benchmark --profile paper --models <folder>``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from snnl.attacks import BIM, FGSM
from snnl.checkpointing import load_checkpoint
from snnl.data import DatasetError, load_dataset
from snnl.experiments.common import config_from_profile, finish_run
from snnl.experiments.ood_detectors import DETECTORS, METRICS, OODDetectors, features, ood_metrics
from snnl.models import build_model
from snnl.results import Run, device_name, resolve_device
from snnl.stats import compare, summarize
from snnl.train import TrainConfig, train

EXPERIMENT = "ood_benchmark"
PAPER = "outliers have fewer than the normal number of neighbours from the predicted class (Sec. 5.3); no metric"
PAIRS = {"mnist": ("notmnist", "fashion-mnist"), "fashion-mnist": ("mnist",), "svhn": ("cifar10",),
         "digits": ("shuffled", "noise")}  # in-distribution -> outlier datasets
SUBSTITUTES = {"shuffled": "pixel-shuffled digits (substitute for a second dataset)",
               "noise": "uniform noise images (substitute for a second dataset)"}
SHORT = {"fashion-mnist": "fmnist"}
VARIANTS = {"baseline": "base", "entangled": "fixedT"}  # config.variant -> Table 1 study suffix
# the small profile's models: the zoo recipe shortened to 150 steps on digits
SMALL_RECIPE = dict(model="zoo", steps=150, batch_size=64, lr=1e-3, temperature=100.0, learn_temperature=False,
                    regularizer="snnl-reference", eval_every=150, log_every=50)


@dataclass
class OODBenchmarkConfig:
    profile: str = "small"  # small (digits, models trained here, ~1 min) or paper (checkpoints of --models)
    datasets: tuple = ("digits",)  # in-distribution sets; their outlier datasets: PAIRS
    seeds: tuple = (0, 1)  # model seeds (paper: those with finished checkpoints)
    variants: tuple = tuple(VARIANTS)  # baseline (alpha 0) and / or entangled (alpha > 0)
    models: str | None = None  # folder of <variant>_paper_s<seed>/checkpoint.pt (paper profile)
    alpha: float = 10.0  # SNNL weight of the entangled models trained here (small profile)
    attacks: tuple = ("fgsm", "bim")  # adversarial outlier sets, each at every eps
    eps: tuple = (0.1, 0.2)  # L-inf budgets of the attacks (paper: 0.1 and 0.3, MNIST's usual values)
    bim_steps: int = 10  # BIM iterations, step eps / 4 (clipped to the eps-ball)
    n_fit: int = 1000  # training points indexed / fitted by the detectors (paper: 2000)
    n_calibration: int = 100  # held-out in-distribution test points calibrating the DkNN (paper: 500)
    n_eval: int = 200  # in-distribution and OOD test points scored (paper: 500)
    n_attack: int = 200  # further test points attacked; successful attacks are the outliers (paper: 500)
    k: int = 75  # DkNN / paper-score neighbours per layer (authors' DkNN code: 75)
    knn_k: int = 50  # Sun et al.'s k (their CIFAR-10 value)
    odin_temperature: float = 1000.0  # ODIN's T (its paper's value)
    odin_eps: float = 0.0014  # ODIN's input step (its paper's value, inputs in [0, 1])
    seed: int = 0  # seed of the data splits and subsets
    device: str = "cpu"  # cpu, cuda, auto

    def __post_init__(self):
        self.datasets, self.seeds, self.attacks, self.eps, self.variants = (tuple(v) for v in (
            self.datasets, self.seeds, self.attacks, self.eps, self.variants))
        if not self.variants or set(self.variants) - set(VARIANTS):
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}, got {self.variants}")
        unknown = [d for d in self.datasets if d not in PAIRS]
        if unknown:
            raise ValueError(f"unknown in-distribution set(s) {unknown}; choose from {', '.join(PAIRS)}")
        if set(self.attacks) - {"fgsm", "bim"}:
            raise ValueError(f"attacks must be fgsm and/or bim, got {self.attacks}")
        for name in ("n_fit", "n_calibration", "n_eval", "k", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds: need at least one model seed")


PROFILES = {"small": {},
            # sizes set by a shared 2-core CPU: the DkNN searches 12,544-wide conv1 features of every point
            "paper": dict(datasets=("mnist", "fashion-mnist"), seeds=(0, 1, 2, 3), eps=(0.1, 0.3), n_fit=2000,
                          n_calibration=500, n_eval=500, n_attack=500)}


def config_for(profile: str = "small", **overrides) -> OODBenchmarkConfig:
    """The profile's configuration with ``overrides`` (unknown names: a ValueError)."""
    return config_from_profile(OODBenchmarkConfig, PROFILES, profile, **overrides)


# ---- models ----------------------------------------------------------------------------------
def variant_name(dataset: str, variant: str) -> str:
    """The Table 1 study's name of a model: ``zoo-mnist-base``, ``zoo-fmnist-fixedT``, ..."""
    return f"zoo-{SHORT.get(dataset, dataset)}-{VARIANTS[variant]}"


def load_model(folder, in_shape, num_classes: int):
    """A finished checkpoint (``folder/checkpoint.pt``): the model and its TrainConfig dict."""
    path = Path(folder) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint")
    ck = load_checkpoint(path, map_location="cpu")
    tc = ck["config"]
    if ck["step"] != tc["steps"]:
        raise RuntimeError(f"{path}: unfinished (step {ck['step']} of {tc['steps']})")
    model = build_model(tc["model"], in_shape, num_classes)
    model.load_state_dict(ck["model"])
    return model.eval(), tc


def finished(models, dataset: str, variant: str, seed: int) -> bool:
    """Whether ``models`` holds the finished checkpoint of that model (see :func:`load_model`)."""
    path = Path(models) / f"{variant_name(dataset, variant)}_paper_s{seed}" / "checkpoint.pt"
    if not path.exists():
        return False
    ck = load_checkpoint(path, map_location="cpu")
    return ck["step"] == ck["config"]["steps"]


def get_model(cfg: OODBenchmarkConfig, data, variant: str, seed: int):
    """(model, model source dict): the paper profile loads a checkpoint, the small one trains."""
    if cfg.profile == "paper":
        name = variant_name(data.name, variant)
        model, tc = load_model(Path(cfg.models) / f"{name}_paper_s{seed}", data.shape, data.num_classes)
        recipe = "the authors' released recipe (cleverhans model zoo CNN), trained by the Table 1 study"
    else:
        name = f"zoo-{data.name}-{VARIANTS[variant]}-small"
        tc = TrainConfig(dataset=data.name, alpha=0.0 if variant == "baseline" else cfg.alpha, seed=seed,
                         device=cfg.device, profile="small", experiment=EXPERIMENT, **SMALL_RECIPE)
        model, tc = train(tc, data=data, progress=False).model.eval(), asdict(tc)
        recipe = "the authors' recipe shortened to 150 steps on digits"
    source = {"name": name, "recipe": recipe, "checkpoint": f"{name}_paper_s{seed}" if cfg.profile == "paper" else None,
              "model": tc["model"], "steps": tc["steps"], "alpha": tc["alpha"],
              "temperature": tc["temperature"], "learn_temperature": tc["learn_temperature"], "seed": tc["seed"]}
    return model.to(resolve_device(cfg.device)), source


# ---- data ------------------------------------------------------------------------------------
def outlier_data(name: str, data, n: int, seed: int) -> torch.Tensor:
    """``n`` test images of an outlier dataset shaped like ``data`` (or a digits substitute)."""
    g = torch.Generator().manual_seed(seed + 7)
    if name == "noise":
        x = torch.rand((n,) + data.shape, generator=g)
    elif name == "shuffled":
        flat = data.x_test[torch.randperm(len(data.x_test), generator=g)[:n]].flatten(1)
        x = flat.gather(1, torch.argsort(torch.rand(flat.shape, generator=g), dim=1)).reshape(-1, *data.shape)
    else:
        out = load_dataset(name, size=data.shape[1], channels=data.shape[0])
        x = out.x_test[torch.randperm(len(out.x_test), generator=g)[:n]]
    if len(x) == 0:
        raise ValueError(f"outlier set {name!r} is empty")
    return x


def adversarial(model, attack: str, eps: float, x, y, steps: int) -> tuple[torch.Tensor, float]:
    """Successful adversarial examples of the correctly classified (x, y), and the success rate."""
    with torch.no_grad():
        ok = model(x)[0].argmax(1) == y
    x, y = x[ok], y[ok]
    a = FGSM(model, eps) if attack == "fgsm" else BIM(model, eps, alpha=eps / 4, steps=steps)
    adv = torch.cat([a(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)]) if len(x) else x
    with torch.no_grad():
        fooled = model(adv)[0].argmax(1) != y if len(x) else torch.zeros(0, dtype=torch.bool)
    return adv[fooled], float(fooled.float().mean()) if len(x) else 0.0


# ---- the run ---------------------------------------------------------------------------------
def run_ood_benchmark(cfg: OODBenchmarkConfig, out_dir=None, log=print) -> list[dict]:
    """Every (in-distribution set, outlier set, variant, seed) of ``cfg``; one record each."""
    records, dev = [], resolve_device(cfg.device)
    if cfg.profile == "paper" and cfg.models is None:
        raise ValueError("the paper profile loads trained models: pass models= (--models <folder>)")
    for ds in cfg.datasets:
        try:
            data = load_dataset(ds, download=False)
        except DatasetError as e:
            raise DatasetError(f"in-distribution set {ds}: {e}") from None
        need = cfg.n_calibration + cfg.n_eval + cfg.n_attack
        if need > len(data.x_test):
            raise ValueError(f"n_calibration + n_eval + n_attack = {need} > {len(data.x_test)} {ds} test points")
        g = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(len(data.x_test), generator=g)
        cal, ev = perm[:cfg.n_calibration], perm[cfg.n_calibration:cfg.n_calibration + cfg.n_eval]
        att = perm[cfg.n_calibration + cfg.n_eval:need]
        fit = torch.randperm(len(data.x_train), generator=g)[:cfg.n_fit]
        ood = {name: outlier_data(name, data, cfg.n_eval, cfg.seed) for name in PAIRS[ds]}
        for seed in cfg.seeds:
            for variant in cfg.variants:
                if cfg.profile == "paper" and not finished(cfg.models, ds, variant, seed):
                    log(f"{ds} {variant} seed {seed}: no finished checkpoint under {cfg.models}; skipped")
                    continue
                model, source = get_model(cfg, data, variant, seed)
                det = OODDetectors(cfg.k, cfg.knn_k, cfg.odin_temperature, cfg.odin_eps).fit(
                    model, features(model, data.x_train[fit]), data.y_train[fit],
                    features(model, data.x_test[cal]), data.y_test[cal])
                x_in = data.x_test[ev]
                s_in = det.score(x_in, features(model, x_in))
                acc = float((model(x_in.to(dev))[0].argmax(1).cpu() == data.y_test[ev]).float().mean())
                sets = dict(ood)
                rates = {}
                for attack in cfg.attacks:
                    for eps in cfg.eps:
                        name = f"{attack}-{eps:g}"
                        sets[name], rates[name] = adversarial(model, attack, eps, data.x_test[att].to(dev),
                                                              data.y_test[att].to(dev), cfg.bim_steps)
                for name, x_out in sets.items():
                    if len(x_out) < 2:
                        log(f"{ds} -> {name} ({variant}, seed {seed}): {len(x_out)} outliers; no record")
                        continue
                    s_out = det.score(x_out.cpu(), features(model, x_out))
                    metrics = {d: ood_metrics(s_in[d], s_out[d]) for d in DETECTORS}
                    conf = {**asdict(cfg), "outliers": name, "variant": variant, "model_source": source,
                            "models": None if cfg.models is None else Path(cfg.models).name,  # no local path
                            "outlier_description": SUBSTITUTES.get(name, name)}
                    run = Run(EXPERIMENT, cfg.profile, ds, seed, conf, device=device_name(dev))
                    hist = {"n_in": len(x_in), "n_out": len(x_out), "accuracy_in": acc,
                            "attack_success_rate": rates.get(name)}
                    records.append(finish_run(run, metrics, out_dir, hist))
                    log(f"{ds} -> {name} ({variant}, seed {seed}): " +
                        ", ".join(f"{d} {metrics[d]['auroc']:.3f}" for d in DETECTORS))
    return records


# ---- reading the records back ----------------------------------------------------------------
def summary(records: list[dict], metric: str = "auroc") -> dict:
    """``{(dataset, outliers): {detector: {variant: snnl.stats.Summary over seeds}}}``."""
    groups: dict = {}
    for r in records:
        if r["experiment"] != EXPERIMENT:
            continue
        key = (r["dataset"], r["config"]["outliers"])
        for d, m in r["metrics"].items():
            groups.setdefault(key, {}).setdefault(d, {}).setdefault(r["config"]["variant"], []).append(m[metric])
    return {k: {d: {v: summarize(x) for v, x in by.items()} for d, by in g.items()} for k, g in groups.items()}


def table_ood_benchmark(records: list[dict]) -> list[dict]:
    """One row per (pair, detector, variant): mean and std over seeds of every metric."""
    rows = []
    sums = {m: summary(records, m) for m in METRICS}
    for pair in sums["auroc"]:
        for d in DETECTORS:
            for v in VARIANTS:
                s = {m: sums[m][pair].get(d, {}).get(v) for m in METRICS}
                if s["auroc"] is None:
                    continue
                row = {"in": pair[0], "outliers": pair[1], "detector": d, "variant": v, "seeds": s["auroc"].n}
                for m in METRICS:
                    row[m] = s[m].mean
                    row[f"{m}_std"] = s[m].std
                rows.append(row)
    return rows


def _seeds(records, pair, variant, detector, metric="auroc"):
    rs = sorted((r["seed"], r["metrics"][detector][metric]) for r in records if r["experiment"] == EXPERIMENT
                and (r["dataset"], r["config"]["outliers"]) == pair and r["config"]["variant"] == variant)
    return [s for s, _ in rs], [v for _, v in rs]


def verdicts(records: list[dict]) -> list[dict]:
    """Per pair: does entangling help DkNN (AUROC, paired over seeds), and how DkNN's AUROC ranks
    among the detectors (the best detector, and DkNN's gap to it), for each variant."""
    out = []
    for pair, by in summary(records).items():
        sb, b = _seeds(records, pair, "baseline", "dknn")
        se, e = _seeds(records, pair, "entangled", "dknn")
        row = {"in": pair[0], "outliers": pair[1], "seeds": len(set(sb) & set(se)), "seeds_baseline": sb,
               "seeds_entangled": se}
        if b and e:
            c = compare(e, b, se, sb)
            helps = ("yes" if c.diff_ci and c.diff_ci[0] > 0 else "no, it hurts" if c.diff_ci and c.diff_ci[1] < 0
                     else "no significant difference" if c.diff_ci else "too few seeds to say")
            row.update(dknn_entangled_minus_baseline=c.diff, diff_ci=c.diff_ci, p=c.p, entangling_helps_dknn=helps)
        for v in VARIANTS:
            means = {d: s[v].mean for d, s in by.items() if v in s}
            if "dknn" in means:
                best = max(means, key=means.get)
                row[f"best_{v}"], row[f"dknn_gap_{v}"] = best, means[best] - means["dknn"]
                row[f"dknn_rank_{v}"] = 1 + sorted(means.values(), reverse=True).index(means["dknn"])
        out.append(row)
    return out


def display_rows(records: list[dict]) -> list[dict]:
    """The chapter's table: per pair and detector, AUROC and FPR@95TPR, mean ± std over seeds."""
    fmt = lambda r, m: "–" if r is None else f"{r[m]:.3f}" + ("" if r[f"{m}_std"] is None else f" ± {r[f'{m}_std']:.3f}")
    rows = {}
    for r in table_ood_benchmark(records):
        row = rows.setdefault((r["in"], r["outliers"], r["detector"]), {
            "pair": f"{r['in']} → {r['outliers']}", "detector": r["detector"], "seeds": r["seeds"]})
        for m in ("auroc", "fpr95"):
            row[f"{m} {r['variant']}"] = fmt(r, m)
    return list(rows.values())


def verdict_lines(records: list[dict]) -> list[str]:
    """One sentence per pair, computed from the records."""
    out = []
    for v in verdicts(records):
        seeds = "; ".join(f"{var} {', '.join(map(str, v[f'seeds_{var}'])) or 'none'}" for var in VARIANTS)
        s = f"**{v['in']} → {v['outliers']}** (seeds: {seeds}): "
        if "entangling_helps_dknn" in v:
            ci = "" if v["diff_ci"] is None else f", 95% CI [{v['diff_ci'][0]:+.3f}, {v['diff_ci'][1]:+.3f}]"
            s += (f"entangling helps DkNN? {v['entangling_helps_dknn']} (AUROC entangled - baseline "
                  f"{v['dknn_entangled_minus_baseline']:+.3f}{ci}). ")
        for var in VARIANTS:
            if f"best_{var}" in v:
                s += (f"{var.capitalize()}: DkNN ranks {v[f'dknn_rank_{var}']} of {len(DETECTORS)}, "
                      f"{v[f'dknn_gap_{var}']:.3f} AUROC below the best ({v[f'best_{var}']}). ")
        out.append(s.strip())
    return out


def plot_ood_benchmark(records: list[dict], metric: str = "auroc"):
    """A heat map per variant (detectors x pairs, mean over seeds) and their difference."""
    import matplotlib.pyplot as plt

    s = summary(records, metric)
    pairs = sorted(s, key=lambda p: (p[0], p[1].split("-")[0] in ("fgsm", "bim"), p[1]))  # datasets, then attacks
    if not pairs:
        raise ValueError("plot_ood_benchmark: no ood_benchmark records")
    grids = {v: np.array([[s[p][d][v].mean if v in s[p].get(d, {}) else np.nan for p in pairs]
                          for d in DETECTORS]) for v in VARIANTS}
    grids["entangled - baseline"] = grids["entangled"] - grids["baseline"]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 2.2 * len(pairs), 0.5 * len(DETECTORS) + 2.2), sharey=True)
    for ax, (title, grid) in zip(axes, grids.items()):
        diff = title.startswith("ent") and "-" in title
        im = ax.imshow(grid, cmap="RdBu" if diff else "viridis", vmin=-0.3 if diff else 0.5, vmax=0.3 if diff else 1)
        for (i, j), val in np.ndenumerate(grid):
            ax.text(j, i, "–" if np.isnan(val) else f"{val:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if (abs(val) > 0.2 if diff else val < 0.75) else "black")
        ax.set_xticks(range(len(pairs)), [f"{a} → {b}" for a, b in pairs], rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(DETECTORS)), DETECTORS)
        ax.set_title(f"{metric.upper()}: {title}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.tight_layout()
    return fig


def report_items(records: list[dict]) -> list[dict]:
    """Rows of the reproduction report: an addition to the paper (no paper number), one per pair."""
    items = []
    for v in verdicts(records):
        items.append({"item": f"OOD benchmark {v['in']} -> {v['outliers']}", "addition": True, "seeds": v["seeds"],
                      "entangling_helps_dknn": v.get("entangling_helps_dknn", "not run"),
                      "dknn_auroc_diff": v.get("dknn_entangled_minus_baseline"), "p": v.get("p"),
                      "best_detector_baseline": v.get("best_baseline"), "dknn_gap_baseline": v.get("dknn_gap_baseline"),
                      "best_detector_entangled": v.get("best_entangled"),
                      "dknn_gap_entangled": v.get("dknn_gap_entangled")})
    return items


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.ood_benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", choices=tuple(PROFILES))
    p.add_argument("--models", help="folder of the trained models' checkpoints (paper profile)")
    p.add_argument("--datasets", nargs="+", help="in-distribution sets (default: the profile's)")
    p.add_argument("--seeds", nargs="+", type=int, help="model seeds (default: the profile's)")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), help="default: both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for the records (default results/<profile>/ood_benchmark)")
    args = p.parse_args(argv)
    over = {k: v for k, v in dict(models=args.models, datasets=args.datasets, seeds=args.seeds,
                                                    variants=args.variants).items() if v}
    try:
        cfg = config_for(args.profile, device=args.device, **over)
        records = run_ood_benchmark(cfg, args.out or f"results/{args.profile}/{EXPERIMENT}")
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for v in verdicts(records):
        print(v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
