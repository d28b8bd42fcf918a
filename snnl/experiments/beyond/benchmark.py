"""Beyond the paper: OOD and adversarial detection on the field's standard metrics.

Section 5.3 of the paper argues that entangled hidden layers make outliers easier to recognise,
because they have "fewer than the normal number of neighbours from the predicted class"; it shows
t-SNE pictures and DkNN calibration plots, no detection metric. This benchmark scores the
baseline and the entangled model of each seed with seven detectors (:mod:`snnl.experiments.beyond.detectors`) on
AUROC, AUPR-IN, AUPR-OUT and FPR@95TPR, for pairs in-distribution -> outliers (:data:`PAIRS`)
and adversarial "outliers": successful FGSM and BIM examples at two eps, made from correctly
classified test points not used elsewhere.

Models. ``paper``: the authors' released recipe (cleverhans model zoo CNN, ``zoo`` in
:mod:`snnl.models`, 6 epochs, alpha 0 vs alpha 10 at a fixed T = 100), trained by the Table 1
study and loaded from its finished checkpoints ``<models>/<variant>_paper_s<seed>/checkpoint.pt``
(not the 14,000-step Table 1 CNN). ``small``: the same zoo model trained here for 150 steps on
scikit-learn digits, with pixel-shuffled digits and uniform noise as substitutes for a second
dataset.

One record per (in-distribution set, outlier set, variant, seed): ``experiment="ood_benchmark"``,
``dataset`` = the in-distribution set, ``config.outliers``, ``config.variant`` (baseline /
entangled), ``config.model_source``; ``metrics = {detector: {auroc, aupr_in, aupr_out, fpr95}}``.
Command line: ``python -m snnl.experiments.beyond --profile paper --models <folder>``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from snnl.attacks import BIM, FGSM
from snnl.checkpointing import load_checkpoint
from snnl.data import DatasetError, load_dataset
from snnl.experiments.common import config_from_profile, finish_run
from snnl.experiments.beyond.results import (  # noqa: F401 (re-exported: one import for chapters)
    EXPERIMENT, VARIANTS, display_rows, overall_line, plot_ood_benchmark, summary, table_ood_benchmark, verdict_lines,
    verdicts)
from snnl.experiments.beyond.detectors import DETECTORS, OODDetectors, features, ood_metrics
from snnl.models import build_model
from snnl.results import Run, device_name, load_records, resolve_device
from snnl.sweeps import Grid, Task
from snnl.train import TrainConfig, train

PAPER = "outliers have fewer than the normal number of neighbours from the predicted class (Sec. 5.3); no metric"
PAIRS = {"mnist": ("notmnist", "fashion-mnist"), "fashion-mnist": ("mnist",), "svhn": ("cifar10",),
         "digits": ("shuffled", "noise")}  # in-distribution -> outlier datasets
SUBSTITUTES = {"shuffled": "pixel-shuffled digits (substitute for a second dataset)",
               "noise": "uniform noise images (substitute for a second dataset)"}
SHORT = {"fashion-mnist": "fmnist"}
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
    if cfg.models is not None and cfg.profile != "paper":
        raise ValueError(f"models (--models) are read at the paper profile only; the {cfg.profile} profile trains "
                         "its own: add --profile paper, or leave --models out")
    if cfg.models is not None and not Path(cfg.models).is_dir():
        raise ValueError(f"models folder {cfg.models} does not exist (expected <variant>_paper_s<seed>/checkpoint.pt "
                         "folders of the Table 1 study)")
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


# ---- the sweep: one run per (in-distribution set, model seed, variant) ---------------------------------
# the paper profile's models: the Table 1 study's checkpoint folders (python -m snnl sweep table1_study),
# beside this sweep's own: <root>/table1_study next to <root>/ood_benchmark
def sweep_models(checkpoint_dir) -> Path:
    return Path(checkpoint_dir).parent.parent / "table1_study"


def _sweep_plan(profile: str, out) -> list[Task]:
    cfg = config_for(profile)
    return [Task(f"{ds}_{v}_s{s}", f"{ds} {v}", {"dataset": ds, "seed": s, "variant": v})
            for ds in cfg.datasets for s in cfg.seeds for v in cfg.variants]


def _sweep_done(task, profile: str, out) -> dict | None:
    p = task.params
    recs = [r for r in load_records(out, EXPERIMENT, profile=profile, dataset=p["dataset"], seed=p["seed"])
            if r["config"]["variant"] == p["variant"]] if Path(out).exists() else []
    return recs[-1] if recs else None


def _sweep_run(task, profile: str, out, checkpoint_dir, device: str) -> dict:
    p = task.params
    cfg = config_for(profile, datasets=(p["dataset"],), seeds=(p["seed"],), variants=(p["variant"],),
                     device="cpu" if device == "auto" else device,
                     **({"models": str(sweep_models(checkpoint_dir))} if profile == "paper" else {}))
    if profile == "paper" and not finished(cfg.models, p["dataset"], p["variant"], p["seed"]):
        raise ValueError(f"no finished checkpoint of {task.key} under {cfg.models}: run the table1_study sweep first")
    records = run_ood_benchmark(cfg, out, log=lambda line: None)
    if not records:
        raise RuntimeError(f"{task.key}: no outlier set had two or more points; no record")
    return records[-1]


SWEEP = Grid(plan=_sweep_plan, done=_sweep_done, run=_sweep_run, profiles=tuple(PROFILES),
             description="the OOD benchmark: every in-distribution set, model seed and variant")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.beyond", description=__doc__.splitlines()[0])
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
