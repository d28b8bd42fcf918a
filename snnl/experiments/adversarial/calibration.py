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

    python -m snnl.experiments.adversarial --profile paper --dataset mnist --out results/paper/calibration \\
        --victim-dir baseline=runs/t1_mnist_a0_s0 --victim-dir entangled=runs/t1_mnist_a10_s0 --wait
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from snnl.attacks import BIM, FGSM
from snnl.checkpointing import load_checkpoint
from snnl.dknn import DkNN, extract_features
from snnl.experiments.adversarial.models import (  # noqa: F401 (re-exported: one import for chapters)
    ATTACKS, SETTINGS, TITLES, CalibrationConfig, checkpoint_name, make_config, model_configs, roles_needed,
    train_models)
from snnl.experiments.adversarial.plots import (  # noqa: F401 (re-exported: one import for chapters)
    COLORS, clean_credibility, compare, plot_calibration, plot_transfer, summary_table, table_calibration,
    table_transfer, transfer_accuracy, transfer_table)
from snnl.experiments.common import PAPER_RECIPE, finish_run
from snnl.experiments.common.rows import INCONCLUSIVE, by_key, fmt_ci, fmt_num, judged, per_dataset, report_item, stands_for
from snnl.results import PROFILES, Run, device_name
from snnl.stats import diff_correlations, diff_proportions
from snnl.train import TrainConfig, load_for

# The paper's claims (Section 5, Apps. B, F: curves, no numbers) and the setting of its runs
PAPER = {"Figs. 9, 18, 19": "credibility more correlated with accuracy for the entangled model",
         "Fig. 14": "no improvement (FGSM)", "Fig. 20": "transfers poorly to a CE model",
         "steps": PAPER_RECIPE["steps"],  # the victims: Table 1's models
         "bim_steps": 1000}  # Fig. 9's caption
PAPER_BIM_STEPS = PAPER["bim_steps"]


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


def _record(run: Run, config, models, metrics, out_dir):
    """Finish ``run`` (created when the experiment started, so that its wall time covers it)."""
    return finish_run(run, metrics, out_dir, config={
        **asdict(config), "models": {r: asdict(m.config) for r, m in models.items()},
        "dknn_layers": list(config.layers or (*models["baseline"].model.layer_names, "logits")),
        "notes": _notes(config, models)}, device=device_name(next(models["baseline"].model.parameters()).device))


def credibility_sweep(config: CalibrationConfig, models: dict | None = None, out_dir=None, cache=None,
                      checkpoint_root=None, checkpoint_dirs=None, progress: bool = True) -> dict:
    """Figs. 9, 18, 19 (snnl) or Fig. 14 (triplet): DkNN accuracy and mean credibility of both
    victims at every eps for every attack in ``config.attacks``, with per-model-and-attack Pearson
    correlation and mean gap. Writes a ``dknn_calibration`` (or ``dknn_calibration_triplet``)
    record to ``out_dir`` if given; returns the record (``record["metrics"]``)."""
    name = "dknn_calibration" if config.regularizer == "snnl" else "dknn_calibration_triplet"
    run = Run(name, config.profile, config.dataset, config.seed)
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
    return _record(run, config, models, metrics, out_dir)


def transfer_matrix(config: CalibrationConfig, models: dict | None = None, out_dir=None, cache=None,
                    checkpoint_root=None, checkpoint_dirs=None, progress: bool = True) -> dict:
    """Fig. 20: each victim (baseline, regularised) on BIM examples crafted on every model
    (both victims and both source models), accuracy of the victim and of its DkNN, and mean DkNN
    credibility, as a function of eps. ``kind``: white box, same loss or cross loss. Writes a
    ``transferability`` record to ``out_dir`` if given; returns the record."""
    run = Run("transferability", config.profile, config.dataset, config.seed)
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
    return _record(run, config, models, {"eps": list(config.eps), "pairs": pairs}, out_dir)


def _finished(folder: Path, steps: int) -> bool:
    ckpt = folder / "checkpoint.pt"
    return ckpt.exists() and load_checkpoint(ckpt, map_location="cpu")["step"] >= steps


# ---- the reproduction report's rows -------------------------------------------------------------
def _reduced(rec, bim: bool = True) -> str:
    """The settings of a calibration record reduced from the paper's (shown in the status cell)."""
    c = rec.get("config") or {}
    out = []
    if bim and c.get("bim_steps") and c["bim_steps"] < PAPER["bim_steps"]:
        out.append(f"BIM {c['bim_steps']} of {PAPER['bim_steps']:,} steps")
    if c.get("steps") and c["steps"] < PAPER["steps"]:
        out.append(f"victims {c['steps']:,} of {PAPER['steps']:,} steps")
    return ", ".join(out)


def _pearson(e: dict, b: dict, n: int, higher: bool = True):
    """``ours`` text and status of "r of e above (or not above) r of b": Zou's 95% interval of the
    difference of the two correlations, each over the ``n`` attack strengths."""
    if e["pearson"] is None or b["pearson"] is None or n < 4:
        return f"r {fmt_num(e['pearson'])} vs {fmt_num(b['pearson'])} (no interval)", INCONCLUSIVE
    d, ci = diff_correlations(e["pearson"], n, b["pearson"], n)
    return (f"r {e['pearson']:.3f} vs {b['pearson']:.3f} ({d:+.3f}, {fmt_ci(ci)})", judged(ci, higher))


def calibration_items(recs):
    items = []
    crit = ("Pearson r of mean credibility and accuracy over the attack strengths, entangled vs baseline: "
            "95% CI of the difference (Zou, over the strengths of one run) above 0")
    for ds, fig in (("svhn", "Fig. 9"), ("mnist", "Fig. 18"), ("fashion-mnist", "Fig. 19")):
        rec = by_key(recs, stands_for).get(ds)
        claim = PAPER["Figs. 9, 18, 19"]
        rows = {} if rec is None else {(s["model"], s["attack"]): s for s in rec["metrics"]["summary"]}
        c = {} if rec is None else rec["config"]
        n = 0 if rec is None else len(c.get("eps") or rec["metrics"].get("eps") or [])
        for attack in ATTACKS:  # a row per panel, run or not: the count of paper items does not depend on records
            e, b = rows.get(("entangled", attack)), rows.get(("baseline", attack))
            if e is None or b is None:
                items.append(report_item(fig, f"{fig}: DkNN calibration ({ds}), {attack}", claim, "dknn_calibration",
                                         [] if rec is None else [rec], criterion=crit,
                                         note="" if rec is None else "this attack is not in the record"))
                continue
            text, status = _pearson(e, b, n)
            items.append(report_item(fig, f"{fig}: DkNN calibration ({ds}), {attack}", claim, "dknn_calibration", [rec],
                                     ours=f"entangled {text}; gap {fmt_num(e['gap'])} vs {fmt_num(b['gap'])}",
                                     status=status, criterion=crit, reduced=_reduced(rec),
                                     note=f"{n} attack strengths, {c.get('n_test')} points; gap = mean "
                                     "|credibility − accuracy|, shown, not judged"))
    return items


def triplet_items(recs):
    def judge(rec):
        rows = {(s["model"], s["attack"]): s for s in rec["metrics"]["summary"]}
        t, b = rows[("triplet", "fgsm")], rows[("baseline", "fgsm")]
        n = len(rec["config"].get("eps") or [])
        text, status = _pearson(t, b, n, higher=False)
        return (f"FGSM: triplet {text}; gap {fmt_num(t['gap'])} vs {fmt_num(b['gap'])}", status,
                f"triplet alpha {rec['config'].get('alpha')}")
    return per_dataset("Fig. 14", "Fig. 14: maximising the triplet loss instead", PAPER["Fig. 14"],
                       "dknn_calibration_triplet", recs, ["mnist"], stands_for, judge,
                       "the triplet model's Pearson r is below the baseline's (FGSM): 95% CI of the difference "
                       "(Zou) below 0", reduced_of=lambda r: _reduced(r, bim=False))


def transfer_items(recs):
    def judge(rec):
        acc = transfer_accuracy(rec)
        a, b = acc[("entangled", "baseline")], acc[("baseline_source", "baseline")]
        n = rec["config"].get("n_test") or 1000
        d, ci = diff_proportions(a, n, b, n)
        return (f"CE victim accuracy on examples crafted on the entangled model {a:.3f} vs on a second CE model "
                f"{b:.3f} ({d:+.3f}, {fmt_ci(ci)})", judged(ci), f"mean over eps > 0, BIM; {n} points")
    return per_dataset("Fig. 20", "Fig. 20: transfer from an entangled model", PAPER["Fig. 20"],
                       "transferability", recs, ["svhn", "mnist", "fashion-mnist"], stands_for, judge,
                       "the CE model is more accurate on examples crafted on the entangled model than on a CE one: "
                       "95% CI of the difference (Newcombe, over the attacked points) above 0", reduced_of=_reduced)


def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Figs. 9, 18, 19 (calibration), 14 (triplet) and 20
    (transfer), from the paper-profile records by experiment."""
    return (calibration_items(records.get("dknn_calibration", []))
            + triplet_items(records.get("dknn_calibration_triplet", []))
            + transfer_items(records.get("transferability", [])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.adversarial", description=__doc__.splitlines()[0])
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
