"""Reading the OOD benchmark's records back (:mod:`snnl.experiments.beyond.benchmark` writes them):
per pair and detector, the summaries over seeds, the verdicts (does entangling help DkNN, where
does DkNN rank), the chapter's table and sentences, and the heat maps. One record per
(in-distribution set, outlier set, variant, seed); ``metrics = {detector: {auroc, aupr_in,
aupr_out, fpr95}}``."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control

from snnl.experiments.beyond.detectors import DETECTORS, METRICS
from snnl.stats import compare, summarize

EXPERIMENT = "ood_benchmark"
VARIANTS = {"baseline": "base", "entangled": "fixedT"}  # config.variant -> Table 1 study suffix


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


def overall_line(records: list[dict]) -> str:
    """All pairs at once: on how many entangling raises or lowers DkNN's AUROC (paired 95% CI; also
    after Benjamini-Hochberg over the pairs' p-values), and DkNN's median rank among the detectors."""
    vs = [v for v in verdicts(records) if np.isfinite(v.get("p", np.nan))]
    if not vs:
        return "No pair has enough runs of both models for a test."
    helps, q = [v["entangling_helps_dknn"] for v in vs], false_discovery_control([v["p"] for v in vs])
    ranks = {var: [v[f"dknn_rank_{var}"] for v in vs if f"dknn_rank_{var}" in v] for var in VARIANTS}
    return (f"**All {len(vs)} pairs:** entangling raises DkNN's AUROC on {helps.count('yes')} (paired 95% CI above 0; "
            f"{sum(x < 0.05 for x in q)} pairs differ after Benjamini-Hochberg at 5%), lowers it on "
            f"{helps.count('no, it hurts')}, no significant difference on {helps.count('no significant difference')}. "
            f"DkNN's median rank among the {len(DETECTORS)} detectors: " +
            ", ".join(f"{var} {np.median(r):g}" for var, r in ranks.items() if r) + ".")


def plot_ood_benchmark(records: list[dict], metric: str = "auroc"):
    """A heat map per variant (detectors x pairs, mean over seeds) and their difference, one above
    the other (one beside the other, eleven pairs each, the numbers could not be read at a page's
    width)."""
    import matplotlib.pyplot as plt

    s = summary(records, metric)
    pairs = sorted(s, key=lambda p: (p[0], p[1].split("-")[0] in ("fgsm", "bim"), p[1]))  # datasets, then attacks
    if not pairs:
        raise ValueError("plot_ood_benchmark: no ood_benchmark records")
    grids = {v: np.array([[s[p][d][v].mean if v in s[p].get(d, {}) else np.nan for p in pairs]
                          for d in DETECTORS]) for v in VARIANTS}
    grids["entangled - baseline"] = grids["entangled"] - grids["baseline"]
    width = max(6.0, 2.6 + 0.62 * len(pairs))
    fig, axes = plt.subplots(3, 1, figsize=(width, 3 * (0.42 * len(DETECTORS) + 0.7) + 1.8), sharex=True)
    for ax, (title, grid) in zip(axes, grids.items()):
        diff = title.startswith("ent") and "-" in title
        im = ax.imshow(grid, cmap="RdBu" if diff else "viridis", vmin=-0.3 if diff else 0.5, vmax=0.3 if diff else 1,
                       aspect="auto")
        for (i, j), val in np.ndenumerate(grid):
            ax.text(j, i, "–" if np.isnan(val) else f"{val:.2f}", ha="center", va="center", fontsize=10,
                    color="white" if (abs(val) > 0.2 if diff else val < 0.75) else "black")
        ax.set_yticks(range(len(DETECTORS)), DETECTORS, fontsize=10)
        ax.set_title(f"{metric.upper()}: {title}" + (" (blue: entangling helps)" if diff else ""), fontsize=11)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.015).ax.tick_params(labelsize=9)
    axes[-1].set_xticks(range(len(pairs)), [f"{a} → {b}" for a, b in pairs], rotation=35, ha="right", fontsize=10)
    fig.tight_layout()
    return fig
