"""The soft nearest neighbor loss on synthetic 2-D points (paper Section 2, Apps. A and B).

* :func:`figure1` (Fig. 1): 200 points from a 2-D Gaussian with 4 random labels; gradient
  descent on the coordinates minimises the loss and the classes become isolated.
* :func:`figure13` (Fig. 13, App. A): two Gaussian modes per class; minimising the loss keeps
  both modes of each class apart instead of collapsing every class to one cluster.
* :func:`figure2` (Fig. 2, App. B): the triplet loss (Eq. 4) and the soft nearest neighbor loss,
  each minimised and maximised from the same start.
* :func:`temperature_curve` (Eq. 2): the loss as a function of T, and the entanglement
  ``min_T l_sn`` found by :func:`snnl.entanglement`.

The paper's figures are qualitative; each function adds numbers a reader can check: the loss
before and after, the 1-nearest-neighbour purity (share of points whose nearest other point has
their label), the adjusted Rand index of a per-class 2-means split against the modes (Fig. 13),
and the coefficient of variation of the distances to the centroid (Fig. 2: about 0.52 for a 2-D
Gaussian, 0.35 for a uniform disc, 0 for a circle).

Optimisation: plain full-batch gradient descent (``torch.optim.SGD``) on the coordinates of the
*sum* of the per-point terms (``b * l_sn``), so that the step size is per point. Every function
returns plain data (numpy arrays, floats) and, given ``out_dir``, writes a results record.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from snnl.experiments.common import finish_run, markdown_table
from snnl.experiments.common.rows import FAILS, SELF_CHECK, against, fmt_ci, judged, per_dataset
from snnl.losses import entanglement, soft_nearest_neighbor_loss, triplet_loss
from snnl.results import Run
from snnl.stats import bootstrap_ci, diff_proportions

# The paper's claims (its Section 2 figures are pictures: no numbers)
PAPER = {"Fig. 1": "classes become isolated", "Fig. 13": "both modes preserved",
         "Fig. 2": "triplet: a circle; SNNL: spread out", "Eq. 2": "the loss minimised over T"}


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread inside (restored after): these problems are tiny, and threads
    only add synchronisation cost (a lot of it on a busy machine). Usable as a decorator."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------
# measurements
def neighbour_purity(points: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of the k nearest other points (Euclidean) that carry the point's label."""
    points, labels = np.asarray(points), np.asarray(labels)
    if not 1 <= k < len(points):
        raise ValueError(f"k must be in [1, {len(points) - 1}], got {k}")
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return float((labels[idx[:, 1:]] == labels[:, None]).mean())  # column 0 is the point itself


def radial_cv(points: np.ndarray) -> float:
    """Coefficient of variation (std / mean) of the distances to the centroid; 0 on a circle."""
    r = np.linalg.norm(np.asarray(points) - np.asarray(points).mean(0), axis=1)
    return float(r.std() / r.mean())


def radial_cv_ci(points: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of :func:`radial_cv` over the points."""
    return bootstrap_ci(np.asarray(points), radial_cv, seed=seed)


# The report's test of "a circle" (Fig. 2): a radial CV below this. A circle has 0, a uniform disc
# 0.35, a 2-D Gaussian 0.52: a ring whose radius varies by about a tenth passes, a disc does not.
CIRCLE_CV = 0.1


def mode_split_ari(points: np.ndarray, labels: np.ndarray, modes: np.ndarray, seed: int = 0) -> float:
    """Mean over classes of the adjusted Rand index between a 2-means split of the class's
    points and its true modes: 1 = both modes are still two separate groups, ~0 = merged."""
    scores = []
    for c in np.unique(labels):
        sel = labels == c
        split = KMeans(2, n_init=10, random_state=seed).fit_predict(points[sel])
        scores.append(adjusted_rand_score(modes[sel], split))
    return float(np.mean(scores))


def _summary(x: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, float]:
    xt = torch.as_tensor(x, dtype=torch.float64)
    ent = entanglement(xt, torch.as_tensor(y))
    return {"loss": float(soft_nearest_neighbor_loss(xt, torch.as_tensor(y), temperature)),
            "purity": neighbour_purity(x, y), "entanglement": ent.value, "radial_cv": radial_cv(x)}


# ----------------------------------------------------------------------------------------------
# gradient descent on the coordinates
def descend(points: np.ndarray, labels: np.ndarray, objective: Callable, steps: int, lr: float,
            maximise: bool = False, progress: bool = False, desc: str = "") -> tuple[np.ndarray, list[float]]:
    """Plain gradient descent (ascent if ``maximise``) of ``len(points) * objective(x, y)`` on
    the coordinates ``x``. Returns the final points and the objective after each step."""
    x = torch.tensor(points, dtype=torch.float32, requires_grad=True)
    y = torch.as_tensor(labels)
    opt = torch.optim.SGD([x], lr=lr)
    history = []
    for _ in tqdm(range(steps), disable=not progress, desc=desc):
        opt.zero_grad()
        value = objective(x, y)
        (value * (-len(x) if maximise else len(x))).backward()
        opt.step()
        history.append(float(value.detach()))
    if not np.isfinite(x.detach().numpy()).all():
        raise FloatingPointError(f"{desc or 'descent'} diverged: lower lr or steps")
    return x.detach().numpy(), history


def _snnl(temperature: float) -> Callable:
    return lambda x, y: soft_nearest_neighbor_loss(x, y, temperature)


# ----------------------------------------------------------------------------------------------
# the figures
@one_thread()
def figure1(n: int = 200, classes: int = 4, temperature: float = 0.5, steps: int = 300, lr: float = 0.01,
            seed: int = 0, out_dir=None, profile: str = "small", progress: bool = False) -> dict:
    """Fig. 1: Gaussian points with random labels; minimise l_sn at ``temperature`` by gradient
    descent on the coordinates. Returns initial/final points, labels, loss history, metrics."""
    run = Run("figure1", profile, "synthetic", seed)
    config = dict(n=n, classes=classes, temperature=temperature, steps=steps, lr=lr)
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((n, 2)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x1, hist = descend(x0, y, _snnl(temperature), steps, lr, progress=progress, desc="Fig. 1")
    metrics = {"initial": _summary(x0, y, temperature), "final": _summary(x1, y, temperature)}
    record = finish_run(run, metrics, out_dir, {"loss": hist}, config=config)
    return {"initial": x0, "final": x1, "labels": y, "loss": np.array(hist), "metrics": metrics, "config": config,
            "record": record}


@one_thread()
def figure13(per_mode: int = 25, classes: int = 4, spread: float = 4.0, sigma: float = 1.0,
             temperature: float = 0.5, steps: int = 300, lr: float = 0.01, seed: int = 0,
             out_dir=None, profile: str = "small", progress: bool = False) -> dict:
    """Fig. 13 (App. A): two Gaussian modes per class (``per_mode`` points each, std ``sigma``).
    ``classes`` sites lie on a circle of radius ``spread``; class c has one mode at site c and
    one at site c + 1, so every site mixes two classes (entangled) while a class's own two modes
    are far apart. Minimise l_sn. Metrics, before and after: per-class 2-means split vs the
    modes (adjusted Rand index, 1 = both modes kept apart) and the mean distance between a
    class's two mode centroids relative to the RMS radius of all points."""
    run = Run("figure13", profile, "synthetic", seed)
    config = dict(per_mode=per_mode, classes=classes, spread=spread, sigma=sigma,
                  temperature=temperature, steps=steps, lr=lr)
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(classes) / classes
    sites = spread * np.stack([np.cos(angle), np.sin(angle)], 1)
    y = np.repeat(np.arange(classes), 2 * per_mode)
    modes = np.tile(np.repeat([0, 1], per_mode), classes)
    centre = sites[(y + modes) % classes]
    x0 = (centre + sigma * rng.standard_normal((len(y), 2))).astype(np.float32)
    x1, hist = descend(x0, y, _snnl(temperature), steps, lr, progress=progress, desc="Fig. 13")

    def modes_apart(x):
        rms = np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean())
        gaps = [np.linalg.norm(x[(y == c) & (modes == 0)].mean(0) - x[(y == c) & (modes == 1)].mean(0))
                for c in range(classes)]
        return float(np.mean(gaps) / rms)

    metrics = {}
    for key, x in (("initial", x0), ("final", x1)):
        metrics[key] = {**_summary(x, y, temperature), "mode_ari": mode_split_ari(x, y, modes, seed),
                        "mode_gap": modes_apart(x)}
    # 95% bootstrap interval over the points of the final split's ARI (300 resamples: 2-means each)
    both = np.column_stack([x1, y, modes])  # a row per point: its coordinates, class and mode
    metrics["final"]["mode_ari_ci"] = bootstrap_ci(
        both, lambda r: mode_split_ari(r[:, :2], r[:, 2].astype(int), r[:, 3].astype(int), seed),
        n_resamples=300, seed=seed)
    record = finish_run(run, metrics, out_dir, {"loss": hist}, config=config)
    return {"initial": x0, "final": x1, "labels": y, "modes": modes, "loss": np.array(hist),
            "metrics": metrics, "config": config, "record": record}


@one_thread()
def figure2(n: int = 200, classes: int = 4, temperature: float = 0.5, margin: float = 1.0,
            steps: int = 300, lr: float = 0.01, triplet_lr: float = 0.005, seed: int = 0,
            out_dir=None, profile: str = "small", progress: bool = False) -> dict:
    """Fig. 2 (App. B): from the SAME Gaussian start with random labels, minimise and maximise
    the soft nearest neighbor loss (at ``temperature``) and the triplet loss (one random positive
    and negative per anchor and step, ``margin``). Returns ``points[(loss, "min"|"max")]`` and
    metrics per run, among them ``radial_cv`` (the paper: maximised triplet -> a circle, i.e. a
    low value; maximised SNNL -> points spread out)."""
    run = Run("figure2", profile, "synthetic", seed)
    config = dict(n=n, classes=classes, temperature=temperature, margin=margin, steps=steps,
                  lr=lr, triplet_lr=triplet_lr)
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((n, 2)).astype(np.float32)
    y = rng.integers(0, classes, n)
    points, histories, metrics = {}, {}, {"start": _summary(x0, y, temperature)}
    for loss in ("snnl", "triplet"):
        for direction in ("min", "max"):
            if loss == "snnl":
                objective, step = _snnl(temperature), lr
            else:
                gen = torch.Generator().manual_seed(seed)  # the same triplets for min and max
                objective, step = (lambda x, yy, g=gen: triplet_loss(x, yy, margin, generator=g)), triplet_lr
            x1, hist = descend(x0, y, objective, steps, step, maximise=direction == "max",
                               progress=progress, desc=f"Fig. 2 {loss} {direction}")
            points[(loss, direction)], histories[f"{loss}_{direction}"] = x1, hist
            metrics[f"{loss}_{direction}"] = {**_summary(x1, y, temperature), "objective_start": hist[0],
                                              "objective_end": hist[-1], "radial_cv_ci": radial_cv_ci(x1, seed)}
    record = finish_run(run, metrics, out_dir, histories, config=config)
    return {"initial": x0, "labels": y, "points": points, "history": histories, "metrics": metrics,
            "config": config, "record": record}


@one_thread()
def temperature_curve(points=None, labels=None, distance: str = "euclidean", t_min: float | None = None,
                      t_max: float | None = None, num: int = 61, n: int = 200, classes: int = 4,
                      seed: int = 0, out_dir=None, profile: str = "small", name: str = "synthetic") -> dict:
    """Eq. 2: l_sn(T) on a log grid and the entanglement ``min_T l_sn`` with its argmin.

    ``points``/``labels`` default to Fig. 1's start (Gaussian, random labels). The grid spans
    ``t_min..t_max`` (default: 1e-3 to 1e3 times ``median_distance``, the median pairwise
    distance d of the first 2,048 points: squared Euclidean or cosine)."""
    run = Run("temperature_curve", profile, name, seed)
    if points is None:
        rng = np.random.default_rng(seed)
        points, labels = rng.standard_normal((n, 2)), rng.integers(0, classes, n)
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64).reshape(len(points), -1)
    y = torch.as_tensor(np.asarray(labels))
    sub = x[:2048]
    if distance == "euclidean":
        d = torch.cdist(sub, sub).pow(2)
    else:
        unit = torch.nn.functional.normalize(sub, dim=1)
        d = 1 - unit @ unit.T
    med = float(d[~torch.eye(len(sub), dtype=torch.bool)].median())
    t_min, t_max = t_min or med * 1e-3, t_max or med * 1e3
    temps = np.logspace(math.log10(t_min), math.log10(t_max), num)
    losses = np.array([float(soft_nearest_neighbor_loss(x, y, float(t), distance)) for t in temps])
    ent = entanglement(x, y, distance, t_range=(t_min, t_max))
    metrics = {"entanglement": ent.value, "temperature": ent.temperature, "at_boundary": ent.at_boundary,
               "median_distance": med,
               "loss_at_t_min": float(losses[0]), "loss_at_t_max": float(losses[-1])}
    finish_run(run, metrics, out_dir, {"temperature": temps, "loss": losses},
               config=dict(distance=distance, t_min=t_min, t_max=t_max, num=num, points=len(x), data=name))
    return {"temperature": temps, "loss": losses, "entanglement": ent.value, "argmin": ent.temperature,
            "at_boundary": ent.at_boundary, "median_distance": med, "metrics": metrics}


# ---- tables, of a run's record or a committed one ----------------------------------------------------
def table_points(record: dict) -> str:
    """Figs. 1, 13, 2: a Markdown table, one row per set of points of ``record`` (before and after
    minimising, or each loss minimised and maximised) with its numbers (loss, 1-NN purity,
    entanglement, radial CV; Fig. 13: the modes; Fig. 2: the objective at the start and the end)."""
    m = record["metrics"]
    keys = list(dict.fromkeys(k for v in m.values() for k in v))
    return markdown_table([{"points": name, **{k: v.get(k) for k in keys}} for name, v in m.items()])


# ---- the reproduction report's rows -------------------------------------------------------------
def report_items(records: dict[str, list[dict]]) -> list[dict]:
    """The reproduction report's rows of Section 2 (Figs. 1, 13, 2, Eq. 2), from the paper-profile
    records by experiment."""

    def fig1(rec):
        i, f = rec["metrics"]["initial"], rec["metrics"]["final"]
        n = rec["config"]["n"]
        d, ci = diff_proportions(f["purity"], n, i["purity"], n)
        status = judged(ci) if f["loss"] < i["loss"] else FAILS
        return (f"1-NN purity {i['purity']:.2f} → {f['purity']:.2f} (+{d:.2f}, {fmt_ci(ci, '.2f')}, "
                f"{n} points); loss {i['loss']:.3f} → {f['loss']:.3f}", status, "")

    def fig13(rec):
        i, f = rec["metrics"]["initial"], rec["metrics"]["final"]
        ci = f.get("mode_ari_ci")
        status = against(ci, 0.9)
        return (f"mode ARI {i['mode_ari']:.2f} → {f['mode_ari']:.2f} ({fmt_ci(ci, '.2f')})", status,
                "" if ci else "a record without the bootstrap interval")

    def fig2(rec):
        m = rec["metrics"]
        t, s_ = m["triplet_max"], m["snnl_max"]
        ci = t.get("radial_cv_ci")
        status = against(ci, CIRCLE_CV, above=False)
        return (f"radial CV of the maximised triplet points {t['radial_cv']:.2f} ({fmt_ci(ci, '.2f')}), "
                f"maximised SNNL {s_['radial_cv']:.2f}; a circle 0, a uniform disc 0.35", status,
                "" if ci else "a record without the bootstrap interval")

    def eq2(rec):
        m, grid = rec["metrics"], (rec.get("history") or {}).get("loss") or []
        floor = min([m["loss_at_t_min"], m["loss_at_t_max"], *grid])
        return (f"min {m['entanglement']:.3f} at T={m['temperature']:.3g}; lowest on the grid {floor:.3f}",
                m["entanglement"] <= floor + 1e-6, "at the searched range's edge" if m["at_boundary"] else "")

    spec = [("figure1", "Fig. 1: minimising SNNL isolates the classes", PAPER["Fig. 1"], fig1,
             "1-NN purity up (95% CI of the difference above 0, Newcombe) and loss down"),
            ("figure13", "Fig. 13: two modes per class are kept", PAPER["Fig. 13"], fig13,
             "per-class 2-means split matches the modes: the 95% bootstrap CI of the ARI at or above 0.9"),
            ("figure2", "Fig. 2: SNNL vs triplet, maximised", PAPER["Fig. 2"], fig2,
             f"the maximised triplet points form a circle: radial CV below {CIRCLE_CV} (a circle 0, a disc "
             "0.35) with its 95% bootstrap CI"),
            ("temperature_curve", "Eq. 2: entanglement = min over T", PAPER["Eq. 2"], eq2,
             "the searched minimum is at or below the loss at every T of a log grid")]
    note = "the book's Section 2 chapter runs these at every profile"
    items = []
    for exp, name, paper, judge, crit in spec:
        kind = {"kind": SELF_CHECK} if exp == "temperature_curve" else {}  # our search, not a claim of the paper
        rows = per_dataset("Section 2", name, paper, exp, records.get(exp, []), [] if records.get(exp) else
                           ["synthetic"], lambda r: r["dataset"], judge, crit, **kind)
        items += [{**r, "note": r["note"] or note} for r in rows]
    return items
