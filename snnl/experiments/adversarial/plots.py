"""Figures and tables of the Deep k-NN calibration records (paper Section 5; Figs. 9, 18-20 of
Appendix F; Fig. 14 of Appendix B).

:func:`plot_calibration` draws Fig. 9-style panels of a ``dknn_calibration`` record,
:func:`plot_transfer` Fig. 20 from a ``transferability`` record; :func:`summary_table`,
:func:`transfer_table` and :func:`compare` put their numbers side by side (:func:`table_calibration`,
:func:`table_transfer`: of one record), :func:`clean_credibility` and :func:`transfer_accuracy` read
them. Each takes this run's record or a committed one alike. The records are written by
:mod:`snnl.experiments.adversarial.calibration`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from snnl.experiments.adversarial.models import ATTACKS, TITLES

COLORS = {"baseline": "tab:blue", "entangled": "tab:red", "triplet": "tab:green"}


def plot_calibration(record: dict, axes=None):
    """Fig. 9-style panels, one per attack the record ran (two per row; no empty panel for an attack
    it did not run): mean DkNN credibility against DkNN accuracy, one point per eps, per victim,
    with the identity line (perfect calibration). ``axes``: a grid to draw into (panels beyond the
    record's attacks are hidden). Returns the figure."""
    m = record["metrics"]
    attacks = [a for a in ATTACKS if any(a in c for c in m["curves"].values())]
    if not attacks:
        raise ValueError("plot_calibration: the record has no credibility curves")
    if axes is None:
        ncol = min(2, len(attacks))
        nrow = -(-len(attacks) // ncol)
        _, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.75 * nrow), sharex=True, sharey=True, squeeze=False)
    grid = np.atleast_2d(axes)
    ncol, flat = grid.shape[1], list(grid.ravel())
    for ax, attack in zip(flat, attacks):
        ax.plot([0, 1], [0, 1], ":", color="gray", lw=1)
        for v, c in m["curves"].items():
            if attack in c:
                r = next(s for s in m["summary"] if s["model"] == v and s["attack"] == attack)
                ax.plot(c[attack]["accuracy"], c[attack]["credibility"], "o-", color=COLORS.get(v), ms=4,
                        label=f"{v} (r={r['pearson']:.2f}, gap={r['gap']:.2f})")
        ax.set(title=TITLES[attack], xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        ax.legend(fontsize=7, loc="upper left")
    for ax in flat[len(attacks):]:
        ax.set_visible(False)
    drawn = flat[:len(attacks)]
    for i, ax in enumerate(drawn):
        if i + ncol >= len(drawn):  # nothing drawn below it
            ax.set_xlabel("DkNN accuracy")
            ax.tick_params(labelbottom=True)
        if i % ncol == 0:
            ax.set_ylabel("mean DkNN credibility")
    fig = flat[0].figure
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
             "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for rec in records:
        c = rec["config"]
        for s in rec["metrics"]["summary"]:
            lines.append(f"| {rec['profile']} | {rec['dataset']} | {c['steps']} ({c['source_steps'] or c['steps']}) "
                         f"| {c['bim_steps']} | {c['n_test']} | {s['model']} | {s['attack']} "
                         f"| {s['pearson'] if s['pearson'] is None else round(s['pearson'], 3)} | {s['gap']:.3f} |")
    return "\n".join(lines)


def table_calibration(record: dict) -> str:
    """:func:`summary_table` of one ``dknn_calibration`` (or ``_triplet``) record."""
    return summary_table([record])


def table_transfer(record: dict) -> str:
    """:func:`transfer_table` of one ``transferability`` record."""
    return transfer_table([record])


def clean_credibility(record: dict) -> dict[str, float]:
    """Per victim: the mean DkNN credibility on the clean test points (eps 0) of a calibration record."""
    m = record["metrics"]
    clean = m["eps"].index(0.0)
    return {v: curves[next(iter(curves))]["credibility"][clean] for v, curves in m["curves"].items()}


def transfer_accuracy(record: dict) -> dict[tuple[str, str], float]:
    """Per (source, victim) of a ``transferability`` record: the victim's accuracy on the source's
    BIM examples, mean over eps > 0."""
    on = [e > 0 for e in record["metrics"]["eps"]]
    mean = lambda p: p["mean_model_accuracy"] if "mean_model_accuracy" in p else \
        sum(a for a, o in zip(p["model_accuracy"], on) if o) / max(1, sum(on))
    return {(p["source"], p["victim"]): mean(p) for p in record["metrics"]["pairs"]}


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
             "|---|---|---|---|---|---:|---:|---:|"]
    for rec in records:
        on = np.array(rec["metrics"]["eps"]) > 0
        for p in rec["metrics"]["pairs"]:
            mean = [float(np.mean(np.array(p[k])[on])) for k in ("model_accuracy", "accuracy", "credibility")]
            lines.append(f"| {rec['profile']} | {rec['dataset']} | {p['victim']} | {p['source']} | {p['kind']} | "
                         + " | ".join(f"{v:.3f}" for v in mean) + " |")
    return "\n".join(lines)

