"""Deep k-NN calibration on adversarial examples, and transferability (paper Section 5;
Figs. 9, 18, 19 and 20 of Appendix F; Fig. 14 of Appendix B).

Two victims of the same architecture: a baseline (cross-entropy, ``alpha = 0``) and a model
regularised on every hidden layer (Eq. 3: ``alpha > 0`` *maximises* the soft nearest neighbor
loss, the "entangled" model; or, for Appendix B, maximises the triplet loss). Each gets a Deep
k-NN (:class:`snnl.DkNN`) on every hidden layer *and* the logits, as in the DkNN authors' code,
calibrated on held-out test points (the authors' code holds out part of the test split, because
the models train on all of the training split), disjoint from the attacked test points.

:func:`credibility_sweep` attacks the victims at every ``eps``: FGSM and BIM white box, BIM
transferred with *source knowledge* (crafted on a second model trained with the victim's loss,
seed + 1) and with *zero knowledge* (crafted on a second cross-entropy model). Each point is the
DkNN accuracy and mean credibility; the paper only plots them, we add, per model and attack, the
Pearson correlation between mean credibility and accuracy across ``eps`` and the mean
``|credibility - accuracy|`` (0 = on the identity line). :func:`transfer_matrix` (Fig. 20)
evaluates every victim on BIM examples crafted on every model. Both write a results record and
share adversarial examples, fitted DkNNs and predictions through an optional ``cache`` dict.

Command line (paper profile; reuses finished Table 1 models)::

    python -m snnl.experiments.calibration --profile paper --dataset mnist --out results/paper/calibration \\
        --victim-dir baseline=runs/t1_mnist_a0_s0 --victim-dir entangled=runs/t1_mnist_a10_s0 --wait
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from snnl.attacks import BIM, FGSM
from snnl.dknn import DkNN, extract_features
from snnl.results import PROFILES, Run, device_name
from snnl.train import TrainConfig, load_for, train

ATTACKS = ("fgsm", "bim", "bim_source", "bim_zero")  # the four panels of Fig. 9
TITLES = {"fgsm": "FGSM, white box", "bim": "BIM, white box",
          "bim_source": "BIM, transfer (source knowledge)", "bim_zero": "BIM, transfer (zero knowledge)"}
PAPER_BIM_STEPS = 1000  # Fig. 9's caption


@dataclass
class CalibrationConfig:
    dataset: str = "digits"  # digits (small); mnist, fashion-mnist (Figs. 18, 19)
    profile: str = "small"  # small or paper (written in the record)
    model: str = "cnn"  # Table 1's CNN
    regularizer: str = "snnl"  # snnl (Figs. 9, 18, 19) or triplet (Appendix B, Fig. 14)
    alpha: float | None = None  # regulariser weight, > 0 maximises it; None: 10 (snnl), 1e-4 (triplet)
    steps: int = 200  # training steps of the victims (paper: 14,000)
    source_steps: int | None = None  # training steps of the transfer-source models (None = steps)
    batch_size: int = 128  # paper: 256
    lr: float = 1e-3  # Adam learning rate (paper: 1e-4)
    size: int | None = 14  # resize images (small: 14x14 digits, 4x less compute); None = native 28x28
    train_experiment: str = "table1"  # experiment in the victims' TrainConfig (reuses Table 1 models)
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)  # L-inf budgets, one point each
    attacks: tuple[str, ...] = ATTACKS  # subset of ATTACKS
    bim_steps: int = 10  # BIM steps, the same for every eps (paper: 1,000)
    bim_alpha: float = 0.05  # BIM step size, the same for every eps
    n_test: int = 300  # attacked test points
    n_calibration: int = 200  # DkNN calibration points (test split, disjoint from the attacked ones)
    n_fit: int | None = None  # training points the DkNN indexes (None = all)
    k: int = 75  # DkNN neighbours per layer (the authors' code)
    layers: tuple[str, ...] | None = None  # DkNN layers (None = every hidden layer and the logits)
    seed: int = 0  # victims; source models use seed + 1; also the test/calibration split
    device: str = "auto"

    def __post_init__(self):
        self.eps, self.attacks = tuple(float(e) for e in self.eps), tuple(self.attacks)
        self.layers = None if self.layers is None else tuple(self.layers)
        if self.regularizer not in ("snnl", "triplet"):
            raise ValueError(f"unknown regularizer {self.regularizer!r}; choose snnl or triplet")
        if self.alpha is None:
            self.alpha = 10.0 if self.regularizer == "snnl" else 1e-4
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0 (the regularised model maximises its loss), got {self.alpha}")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if len(self.eps) < 2 or any(not (0 <= e <= 1) for e in self.eps) or list(self.eps) != sorted(set(self.eps)):
            raise ValueError(f"eps must be at least 2 increasing values in [0, 1], got {self.eps}")
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise ValueError(f"unknown attack(s) {bad}; choose from {', '.join(ATTACKS)}")
        for name in ("steps", "batch_size", "bim_steps", "n_test", "n_calibration", "k", "bim_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def name(self) -> str:
        """The regularised victim's role: ``entangled`` (SNNL) or ``triplet``."""
        return "entangled" if self.regularizer == "snnl" else "triplet"


PAPER = dict(steps=14000, source_steps=5000, batch_size=256, lr=1e-4, size=None, bim_steps=50, bim_alpha=0.01,
             eps=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), n_test=1000, n_calibration=1000)


def make_config(profile: str = "small", **overrides) -> CalibrationConfig:
    """The small defaults, or the paper profile (the paper's CNN training; fewer BIM steps,
    1,000 attacked points and source models trained ``source_steps``), then ``overrides``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    base = dict(PAPER, dataset="mnist") if profile == "paper" else {}
    return CalibrationConfig(**{**base, "profile": profile, **overrides})


def model_configs(config: CalibrationConfig) -> dict[str, TrainConfig]:
    """TrainConfig of each role: the victims ``baseline`` and ``config.name`` (seed), and the
    transfer sources ``baseline_source`` and ``<name>_source`` (seed + 1, ``source_steps``)."""
    def tc(alpha, seed, steps, experiment):
        return TrainConfig(dataset=config.dataset, model=config.model, alpha=float(alpha),
                           regularizer=config.regularizer if alpha else "snnl", steps=steps,
                           batch_size=config.batch_size, lr=config.lr, size=config.size, seed=seed,
                           device=config.device, profile=config.profile, experiment=experiment)
    src = config.source_steps or config.steps
    victim_exp = config.train_experiment if config.regularizer == "snnl" else "dknn_calibration_model"
    return {"baseline": tc(0, config.seed, config.steps, config.train_experiment),
            config.name: tc(config.alpha, config.seed, config.steps, victim_exp),
            "baseline_source": tc(0, config.seed + 1, src, "dknn_calibration_source"),
            f"{config.name}_source": tc(config.alpha, config.seed + 1, src, "dknn_calibration_source")}


def checkpoint_name(tc: TrainConfig) -> str:
    """Default checkpoint folder name of a model: ``cal_<dataset>_<reg>_a<alpha>_s<seed>_<steps>``."""
    return f"cal_{tc.dataset}_{tc.regularizer}_a{tc.alpha:g}_s{tc.seed}_{tc.steps}"


def roles_needed(config: CalibrationConfig, transfer: bool = False) -> list[str]:
    """The models a sweep of ``config.attacks`` (and, with ``transfer``, the matrix) needs."""
    transfer = transfer or "bim_source" in config.attacks
    return ["baseline", config.name] + ["baseline_source"] * (transfer or "bim_zero" in config.attacks) \
        + [f"{config.name}_source"] * transfer


def train_models(config: CalibrationConfig, roles=None, checkpoint_root=None, checkpoint_dirs=None,
                 known=None, progress: bool = True) -> dict:
    """Train (or load from checkpoints) the models of ``roles`` (default: those the attacks need).

    ``checkpoint_dirs`` maps a role to its folder (e.g. a finished Table 1 run), others go to
    ``checkpoint_root/checkpoint_name(...)`` (no checkpoints when both are None). ``known``: a
    dict of :class:`snnl.train.TrainResult` to reuse when a role's TrainConfig equals one.
    Returns role -> TrainResult.
    """
    configs, dirs, out = model_configs(config), dict(checkpoint_dirs or {}), {}
    pool = list((known or {}).values())
    for role in roles or roles_needed(config):
        tc = configs[role]
        hit = next((r for r in pool if asdict(r.config) == asdict(tc)), None)
        if hit is None:
            ckpt = dirs.get(role) or (Path(checkpoint_root) / checkpoint_name(tc) if checkpoint_root else None)
            hit = train(tc, checkpoint_dir=ckpt, progress=progress)
            pool.append(hit)
        out[role] = hit
    return out


def calibration_stats(accuracy, credibility) -> dict:
    """Pearson correlation of mean credibility with accuracy across eps (NaN when either is
    constant) and the mean absolute gap ``|credibility - accuracy|`` (0 = the identity line)."""
    acc, cred = np.asarray(accuracy, float), np.asarray(credibility, float)
    if acc.shape != cred.shape or acc.ndim != 1 or len(acc) < 2:
        raise ValueError(f"need two 1-D sequences of the same length >= 2, got {acc.shape} and {cred.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        r = float(stats.pearsonr(acc, cred)[0]) if np.ptp(acc) > 0 and np.ptp(cred) > 0 else float("nan")
    return {"pearson": r, "gap": float(np.abs(cred - acc).mean())}


def split_test(n: int, n_test: int, n_calibration: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random indices into a test split of size ``n``: (attacked, calibration)."""
    if n_test + n_calibration > n:
        raise ValueError(f"n_test + n_calibration = {n_test + n_calibration} exceeds the {n} test points")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test], perm[n_test:n_test + n_calibration]


def _key(tc: TrainConfig) -> str:
    return json.dumps(asdict(tc), sort_keys=True)


class _Bench:
    """Data, split and the cached adversarial examples / DkNNs / predictions of one config."""

    def __init__(self, config: CalibrationConfig, models: dict, cache: dict | None):
        self.c, self.models, self.cache = config, models, ({} if cache is None else cache)
        dkey = ("data", config.dataset, config.size)
        if dkey not in self.cache:
            self.cache[dkey] = load_for(models["baseline"].config)
        self.data = d = self.cache[dkey]
        t, c = split_test(len(d.y_test), config.n_test, config.n_calibration, config.seed)
        self.x, self.y, self.x_cal, self.y_cal = d.x_test[t], d.y_test[t], d.x_test[c], d.y_test[c]
        self.split = (config.dataset, config.size, config.seed, config.n_test, config.n_calibration)

    def _cached(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def adversarial(self, source: str, kind: str, eps: float) -> tuple[tuple, torch.Tensor]:
        if eps == 0:
            return ("clean", self.split), self.x
        c, model = self.c, self.models[source].model
        key = ("adv", _key(self.models[source].config), kind, eps, c.bim_steps, c.bim_alpha, self.split)
        atk = FGSM(model, eps) if kind == "fgsm" else BIM(model, eps, alpha=c.bim_alpha, steps=c.bim_steps)
        return key, self._cached(key, lambda: torch.cat([atk(xb, yb) for xb, yb in
                                                         zip(self.x.split(500), self.y.split(500))]))

    def dknn(self, role: str) -> DkNN:
        c, r = self.c, self.models[role]
        def fit():
            d = self.data
            idx = torch.randperm(len(d.y_train), generator=torch.Generator().manual_seed(c.seed))[:c.n_fit]
            knn = DkNN(k=c.k, num_classes=d.num_classes)
            knn.fit(extract_features(r.model, d.x_train[idx], c.layers), d.y_train[idx])
            return knn.calibrate(extract_features(r.model, self.x_cal, c.layers), self.y_cal)
        return self._cached(("dknn", _key(r.config), c.k, c.layers, c.n_fit, self.split), fit)

    def evaluate(self, victim: str, source: str, kind: str, eps: float) -> tuple[float, float, float]:
        """(DkNN accuracy, mean credibility, the victim's own accuracy) on one adversarial set."""
        akey, x = self.adversarial(source, kind, eps)
        model, y = self.models[victim].model, self.y.numpy()
        def run():
            out = self.dknn(victim).predict(extract_features(model, x, self.c.layers))
            own = extract_features(model, x, ["logits"])[0].argmax(1)
            return float((out.prediction == y).mean()), float(out.credibility.mean()), float((own == y).mean())
        return self._cached(("eval", _key(self.models[victim].config), akey, self.c.k, self.c.layers,
                             self.c.n_fit), run)

    def curve(self, victim: str, source: str, kind: str, bar) -> list[list[float]]:
        """[DkNN accuracy, mean credibility, own accuracy], each a list over eps."""
        rows = [(self.evaluate(victim, source, kind, eps), bar.update(1))[0] for eps in self.c.eps]
        return [list(col) for col in zip(*rows)]


def _notes(config: CalibrationConfig, models: dict) -> list[str]:
    notes = [f"DkNN calibration: {config.n_calibration} held-out test points, disjoint from the "
             f"{config.n_test} attacked test points (as the DkNN authors' code)"]
    if config.bim_steps != PAPER_BIM_STEPS:
        notes.append(f"BIM: {config.bim_steps} steps of {config.bim_alpha:g} for every eps "
                     f"(paper: {PAPER_BIM_STEPS} steps)")
    src = {r: m.config.steps for r, m in models.items() if r.endswith("_source")}
    if any(s != config.steps for s in src.values()):
        notes.append(f"transfer-source models trained {sorted(set(src.values()))} steps, victims {config.steps}")
    return notes


def _record(experiment, config, models, bench, metrics, out_dir):
    cfg = {**asdict(config), "models": {r: asdict(m.config) for r, m in models.items()},
           "dknn_layers": list(config.layers or (*models["baseline"].model.layer_names, "logits")),
           "notes": _notes(config, models)}
    device = device_name(next(models["baseline"].model.parameters()).device)
    return Run(experiment, config.profile, config.dataset, config.seed, cfg, device).finish(metrics, out_dir)


def credibility_sweep(config: CalibrationConfig, models: dict | None = None, out_dir=None, cache=None,
                      checkpoint_root=None, checkpoint_dirs=None, progress: bool = True) -> dict:
    """Figs. 9, 18, 19 (snnl) or Fig. 14 (triplet): DkNN accuracy and mean credibility of both
    victims at every eps for every attack in ``config.attacks``, with per-model-and-attack Pearson
    correlation and mean gap. Writes a ``dknn_calibration`` (or ``dknn_calibration_triplet``)
    record to ``out_dir`` if given; returns the record (``record["metrics"]``)."""
    models = models or train_models(config, checkpoint_root=checkpoint_root,
                                    checkpoint_dirs=checkpoint_dirs, progress=progress)
    bench, victims = _Bench(config, models, cache), ["baseline", config.name]
    source = {"fgsm": ("{v}", "fgsm"), "bim": ("{v}", "bim"), "bim_source": ("{v}_source", "bim"),
              "bim_zero": ("baseline_source", "bim")}
    curves, summary = {v: {} for v in victims}, []
    bar = tqdm(total=len(victims) * len(config.attacks) * len(config.eps), disable=not progress, desc="sweep")
    for v in victims:
        for attack in config.attacks:
            src, kind = source[attack][0].format(v=v), source[attack][1]
            acc, cred, own = bench.curve(v, src, kind, bar)
            curves[v][attack] = {"source": src, "accuracy": acc, "credibility": cred, "model_accuracy": own}
            summary.append({"model": v, "attack": attack, **calibration_stats(acc, cred)})
    bar.close()
    metrics = {"eps": list(config.eps), "curves": curves, "summary": summary,
               "clean_accuracy": {v: curves[v][config.attacks[0]]["model_accuracy"][0] for v in victims},
               "test_accuracy": {r: m.metrics["test_accuracy"] for r, m in models.items()}}
    name = "dknn_calibration" if config.regularizer == "snnl" else "dknn_calibration_triplet"
    return _record(name, config, models, bench, metrics, out_dir)


def transfer_matrix(config: CalibrationConfig, models: dict | None = None, out_dir=None, cache=None,
                    checkpoint_root=None, checkpoint_dirs=None, progress: bool = True) -> dict:
    """Fig. 20: each victim (baseline, regularised) on BIM examples crafted on every model
    (both victims and both source models), accuracy of the victim and of its DkNN, and mean DkNN
    credibility, as a function of eps. ``kind``: white box, same loss or cross loss. Writes a
    ``transferability`` record to ``out_dir`` if given; returns the record."""
    roles = roles_needed(config, transfer=True)
    models = models or train_models(config, roles, checkpoint_root, checkpoint_dirs, progress=progress)
    bench, pairs, attacked = _Bench(config, models, cache), [], np.array(config.eps) > 0
    victims = ["baseline", config.name]
    bar = tqdm(total=len(victims) * len(roles) * len(config.eps), disable=not progress, desc="transfer")
    for v in victims:
        for s in roles:
            acc, cred, own = bench.curve(v, s, "bim", bar)
            same = models[s].config.alpha == models[v].config.alpha
            pairs.append({"source": s, "victim": v, "kind": "white box" if s == v else
                          ("same loss" if same else "cross loss"), "accuracy": acc, "credibility": cred,
                          "model_accuracy": own, "mean_model_accuracy": float(np.mean(np.array(own)[attacked]))})
    bar.close()
    return _record("transferability", config, models, bench, {"eps": list(config.eps), "pairs": pairs}, out_dir)


COLORS = {"baseline": "tab:blue", "entangled": "tab:red", "triplet": "tab:green"}


def plot_calibration(record: dict, axes=None):
    """Fig. 9-style 2x2 panels: mean DkNN credibility against DkNN accuracy, one point per eps,
    per victim, with the identity line (perfect calibration). Returns the figure."""
    m = record["metrics"]
    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(8, 7.5), sharex=True, sharey=True)
    for ax, attack in zip(np.ravel(axes), ATTACKS):
        ax.plot([0, 1], [0, 1], ":", color="gray", lw=1)
        for v, c in m["curves"].items():
            if attack in c:
                r = next(s for s in m["summary"] if s["model"] == v and s["attack"] == attack)
                ax.plot(c[attack]["accuracy"], c[attack]["credibility"], "o-", color=COLORS.get(v), ms=4,
                        label=f"{v} (r={r['pearson']:.2f}, gap={r['gap']:.2f})")
        ax.set(title=TITLES[attack], xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        if len(ax.lines) > 1:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "not run", ha="center")
    for ax in np.ravel(axes)[2:]:
        ax.set_xlabel("DkNN accuracy")
    for ax in np.ravel(axes)[::2]:
        ax.set_ylabel("mean DkNN credibility")
    fig = np.ravel(axes)[0].figure
    fig.suptitle(f"{record['dataset']} ({record['profile']} profile), eps = {m['eps']}", fontsize=9)
    return fig


def plot_transfer(record: dict):
    """Fig. 20 as accuracy of each victim against eps, one line per source model."""
    m, victims = record["metrics"], list(dict.fromkeys(p["victim"] for p in record["metrics"]["pairs"]))
    fig, axes = plt.subplots(1, len(victims), figsize=(4.2 * len(victims), 3.4), sharey=True)
    for ax, v in zip(np.ravel(axes), victims):
        for p in (p for p in m["pairs"] if p["victim"] == v):
            style = "--" if p["source"].endswith("_source") else "-"
            ax.plot(m["eps"], p["model_accuracy"], style, marker="o", ms=3, color=COLORS.get(p["source"].split("_")[0]),
                    label=f"from {p['source']} ({p['kind']})")
        ax.set(title=f"victim: {v}", xlabel="eps", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    np.ravel(axes)[0].set_ylabel("victim accuracy on BIM examples")
    return fig


def summary_table(records: list[dict]) -> str:
    """A Markdown table of correlation and gap per dataset, model and attack, with the scale."""
    lines = ["| profile | dataset | steps (source) | BIM steps | attacked | model | attack | Pearson r | mean gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        c = rec["config"]
        for s in rec["metrics"]["summary"]:
            lines.append(f"| {rec['profile']} | {rec['dataset']} | {c['steps']} ({c['source_steps'] or c['steps']}) "
                         f"| {c['bim_steps']} | {c['n_test']} | {s['model']} | {s['attack']} "
                         f"| {s['pearson'] if s['pearson'] is None else round(s['pearson'], 3)} | {s['gap']:.3f} |")
    return "\n".join(lines)


def compare(record: dict, name: str = "entangled") -> dict:
    """Attacks for which ``name``'s credibility correlates better with accuracy than the baseline's
    (higher Pearson r) and lies closer to the identity line (smaller gap). NaN / None never wins."""
    rows = {(s["model"], s["attack"]): s for s in record["metrics"]["summary"]}
    attacks = [a for a in record["config"]["attacks"] if (name, a) in rows]
    r = {k: (-np.inf if v["pearson"] is None or np.isnan(v["pearson"]) else v["pearson"]) for k, v in rows.items()}
    return {"attacks": attacks, "pearson_better": [a for a in attacks if r[(name, a)] > r[("baseline", a)]],
            "gap_smaller": [a for a in attacks if rows[(name, a)]["gap"] < rows[("baseline", a)]["gap"]]}


def transfer_table(records: list[dict]) -> str:
    """A Markdown table: mean accuracy of each victim (and its DkNN) over the eps > 0 of each source."""
    lines = ["| profile | dataset | victim | source | kind | model accuracy | DkNN accuracy | DkNN credibility |",
             "|---|---|---|---|---|---|---|---|"]
    for rec in records:
        on = np.array(rec["metrics"]["eps"]) > 0
        for p in rec["metrics"]["pairs"]:
            mean = [float(np.mean(np.array(p[k])[on])) for k in ("model_accuracy", "accuracy", "credibility")]
            lines.append(f"| {rec['profile']} | {rec['dataset']} | {p['victim']} | {p['source']} | {p['kind']} | "
                         + " | ".join(f"{v:.3f}" for v in mean) + " |")
    return "\n".join(lines)


def _finished(folder: Path, steps: int) -> bool:
    ckpt = folder / "checkpoint.pt"
    return ckpt.exists() and torch.load(ckpt, map_location="cpu", weights_only=False)["step"] >= steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.calibration", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", choices=PROFILES)
    p.add_argument("--dataset", default=None)
    p.add_argument("--regularizer", default="snnl", choices=("snnl", "triplet"))
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--source-steps", type=int, default=None)
    p.add_argument("--train-experiment", default=None, help="experiment name in the victims' TrainConfig")
    p.add_argument("--attacks", default=None, help="comma-separated subset of " + ",".join(ATTACKS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="folder for the results records")
    p.add_argument("--checkpoint-root", default="runs", help="checkpoints of the models trained here")
    p.add_argument("--victim-dir", action="append", default=[], help="ROLE=FOLDER: a finished checkpoint to use")
    p.add_argument("--wait", action="store_true", help="wait until every --victim-dir checkpoint is finished")
    p.add_argument("--no-transfer", action="store_true", help="skip the transfer matrix (Fig. 20)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    over = {k: v for k, v in dict(dataset=a.dataset, alpha=a.alpha, steps=a.steps, source_steps=a.source_steps,
                                  train_experiment=a.train_experiment,
                                  attacks=a.attacks and tuple(a.attacks.split(","))).items() if v is not None}
    cfg = make_config(a.profile, regularizer=a.regularizer, seed=a.seed, device=a.device, **over)
    dirs, configs = dict(v.split("=", 1) for v in a.victim_dir), model_configs(cfg)
    if set(dirs) - set(configs):
        p.error(f"--victim-dir: unknown role(s) {sorted(set(dirs) - set(configs))}; choose from {list(configs)}")
    roles = roles_needed(cfg, transfer=not a.no_transfer)
    for role, folder in dirs.items():
        if not (_finished(Path(folder), configs[role].steps) or a.wait):
            p.error(f"{folder} holds no finished run of {configs[role].steps} steps (use --wait)")
    # models trained here first, then the victims of other runs once they are finished
    models = train_models(cfg, [r for r in roles if r not in dirs], a.checkpoint_root, progress=not a.no_progress)
    for role, folder in dirs.items():
        while not _finished(Path(folder), configs[role].steps):
            time.sleep(60)
    models.update(train_models(cfg, [r for r in roles if r in dirs], checkpoint_dirs=dirs, progress=False))
    cache: dict = {}
    for fn in (credibility_sweep,) + (() if a.no_transfer else (transfer_matrix,)):
        rec = fn(cfg, models, out_dir=a.out, cache=cache, progress=not a.no_progress)
        print(rec.get("path", rec["experiment"]), json.dumps(rec["metrics"].get("summary", ""))[:2000], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
