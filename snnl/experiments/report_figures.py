"""The figures' items of the reproduction report (:mod:`snnl.experiments.report`): one item per
paper dataset (listed as not run when there is no record) and per extra dataset, each judged by
the number the companion adds to the figure (the criterion is in the item)."""

from __future__ import annotations

from snnl.experiments.calibration_models import PAPER as CALIBRATION_PAPER
from snnl.experiments.report_items import NOT_RUN, better, by_key, fmt_num, report_item, verdict
from snnl.experiments.representations import LayerEntanglement


# ---- figures: one item per paper dataset (not run when missing) and per extra dataset ----------
def _per_dataset(section, name, paper, experiment, recs, wanted, key, judge, criterion):
    """``judge(record) -> (ours, ok, note)``; ``wanted``: the paper's datasets (keys), listed
    even without a record; records of other datasets follow."""
    found = by_key(recs, key)
    items = []
    for ds in list(wanted) + [k for k in found if k not in wanted]:
        rec = found.get(ds)
        title = f"{name} ({ds})"
        if rec is None:
            items.append(report_item(section, title, paper, experiment, criterion=criterion))
            continue
        ours, ok, note = judge(rec)
        items.append(report_item(section, title, paper, experiment, [rec], ours=ours, status=verdict(ok), note=note,
                           criterion=criterion))
    return items


def _stands(r):
    return (r.get("config") or {}).get("substitute_for") or r["dataset"]


def _scale(rec) -> str:
    """`` (victims N steps, paper 14,000)`` for a calibration run whose victims trained for less."""
    steps, paper = (rec.get("config") or {}).get("steps"), CALIBRATION_PAPER["steps"]
    return f" (victims {steps} steps, paper {paper:,})" if steps and steps < paper else ""


def calibration_items(recs):
    items = []
    for ds, fig in (("svhn", "Fig. 9"), ("mnist", "Fig. 18"), ("fashion-mnist", "Fig. 19")):
        rec = by_key(recs, _stands).get(ds)
        claim = "credibility more correlated with accuracy for the entangled model"
        crit = "Pearson r (mean credibility vs accuracy over eps) higher for the entangled model"
        if rec is None:
            items.append(report_item(fig, f"{fig}: DkNN calibration ({ds})", claim, "dknn_calibration", criterion=crit))
            continue
        rows = {(s["model"], s["attack"]): s for s in rec["metrics"]["summary"]}
        c = rec["config"]
        note = f"victims {c.get('steps')} steps, BIM {c.get('bim_steps')} steps (paper 1,000), {c.get('n_test')} points"
        for attack in dict.fromkeys(a for _, a in rows):
            e, b = rows.get(("entangled", attack)), rows.get(("baseline", attack))
            if e is None or b is None:
                continue
            ours = (f"r {fmt_num(e['pearson'])} vs {fmt_num(b['pearson'])}; gap {fmt_num(e['gap'])} vs {fmt_num(b['gap'])}"
                    + _scale(rec))
            items.append(report_item(fig, f"{fig}: DkNN calibration ({ds}), {attack}", claim, "dknn_calibration", [rec],
                               ours=ours, status=verdict(better(e["pearson"], b["pearson"])), criterion=crit,
                               note=note + "; gap = mean |credibility − accuracy|, shown, not judged"))
    return items


def triplet_items(recs):
    def judge(rec):
        rows = {(s["model"], s["attack"]): s for s in rec["metrics"]["summary"]}
        t, b = rows[("triplet", "fgsm")], rows[("baseline", "fgsm")]
        return (f"FGSM r {fmt_num(t['pearson'])} vs {fmt_num(b['pearson'])}; gap {fmt_num(t['gap'])} vs {fmt_num(b['gap'])}"
                + _scale(rec),
                not better(t["pearson"], b["pearson"]), f"triplet alpha {rec['config'].get('alpha')}")
    return _per_dataset("Fig. 14", "Fig. 14: maximising the triplet loss instead", "no improvement (FGSM)",
                        "dknn_calibration_triplet", recs, ["mnist"], _stands, judge,
                        "the triplet model's Pearson r is not higher than the baseline's (FGSM)")


def transfer_items(recs):
    def judge(rec):
        on = [e > 0 for e in rec["metrics"]["eps"]]
        mean = lambda p: p["mean_model_accuracy"] if "mean_model_accuracy" in p else \
            sum(a for a, o in zip(p["model_accuracy"], on) if o) / max(1, sum(on))
        acc = {(p["source"], p["victim"]): mean(p) for p in rec["metrics"]["pairs"]}
        a, b = acc[("entangled", "baseline")], acc[("baseline_source", "baseline")]
        return (f"CE victim accuracy {a:.3f} on examples from the entangled model vs {b:.3f} from a second CE model"
                + _scale(rec),
                a > b, "mean over eps > 0, BIM")
    return _per_dataset("Fig. 20", "Fig. 20: transfer from an entangled model", "transfers poorly to a CE model",
                        "transferability", recs, ["svhn", "mnist", "fashion-mnist"], _stands, judge,
                        "the CE model is more accurate on examples crafted on the entangled model than on a CE one")


def ood_items(recs):
    def judge(rec):
        m = rec["metrics"]
        e, b = m["entangled"], m["baseline"]
        return (f"AUROC credibility {e['auroc_credibility']:.3f} vs {b['auroc_credibility']:.3f}; "
                f"softmax {e['auroc_softmax']:.3f} vs {b['auroc_softmax']:.3f}",
                e["auroc_credibility"] > b["auroc_credibility"], "in- vs out-of-distribution, entangled vs baseline")
    return _per_dataset("Figs. 12, 21", "Figs. 12, 21: OOD inputs set apart", "the entangled model separates OOD data",
                        "ood", recs, ["svhn+cifar10", "mnist+notmnist"], lambda r: r["dataset"], judge,
                        "AUROC of DkNN credibility (in vs out) higher for the entangled model")


def gradient_items(recs):
    def judge(rec):
        m = {k: v["cross_model_knn_accuracy"] for k, v in rec["metrics"].items()}
        cos = {k: v["cosine_sign"] for k, v in rec["metrics"].items()}
        return (f"cross-model kNN accuracy: CE pair {m['baseline']:.3f}, entangled pair {m['entangled']:.3f}, "
                f"mixed {m['mixed']:.3f}", m["baseline"] > max(m["entangled"], m["mixed"]),
                "sign-gradient cosine " + ", ".join(f"{k} {v:.3f}" for k, v in cos.items()))
    return _per_dataset("Figs. 10, 11", "Figs. 10, 11: targeted-FGSM gradients aligned",
                        "aligned for two CE models, not with entangled ones", "adversarial_gradients", recs,
                        ["mnist"], lambda r: r["dataset"], judge,
                        "CE pair's cross-model kNN accuracy above the entangled and the mixed pair's")


def hidden_items(recs):
    def judge(rec):
        e, b = rec["metrics"]["entangled"], rec["metrics"]["baseline"]
        return (f"kNN real-vs-adversarial accuracy {e['knn_accuracy_layer']:.3f} vs {b['knn_accuracy_layer']:.3f}",
                e["knn_accuracy_layer"] > b["knn_accuracy_layer"], f"{rec['config'].get('hidden_attack')} "
                f"eps {rec['config'].get('hidden_eps')}, layer {rec['config'].get('hidden_layer')}")
    return _per_dataset("Fig. 22", "Fig. 22: adversarial points apart in the first hidden layer",
                        "separate in the entangled model, mixed in the CE model", "hidden_adversarial", recs,
                        ["fashion-mnist"], lambda r: r["dataset"], judge,
                        "kNN accuracy at telling real from adversarial higher for the entangled model")


def gan_items(by_exp):
    def rises(rec):
        m = rec["metrics"]
        rho = m.get("entanglement_spearman")
        return (f"entanglement {m['entanglement_start']:.3f} → {m['entanglement_end']:.3f} "
                f"(Spearman with step {fmt_num(rho, '.2f')})", m["entanglement_end"] > m["entanglement_start"]
                and (rho is None or rho > 0), f"{rec['config'].get('steps')} steps")

    def variant(r):
        return f"{r['dataset']}, {(r.get('config') or {}).get('variant') or r['metrics'].get('variant')}"

    def coverage(rec):
        m = rec["metrics"]
        hist = m.get("class_histogram") or []
        return (f"{m['class_coverage']} of {len(hist)} classes ≥ {m.get('coverage_threshold', 0.01):.0%} of "
                f"{m.get('classified_samples', '?')} samples (smallest {min(hist, default=0):.1%})",
                bool(hist) and m["class_coverage"] == len(hist),
                f"real data: {m.get('real_class_coverage')} classes; classifier accuracy "
                f"{fmt_num(m.get('classifier_test_accuracy'))}")

    return (_per_dataset("Figs. 4, 5, 17", "Figs. 4, 5, 17: GAN real/synthetic entanglement rises", "rises over training",
                         "gan_entanglement", by_exp.get("gan_entanglement", []),
                         ["cifar10, dcgan", "cifar10, fc", "mnist, dcgan", "mnist, fc"], variant, rises,
                         "entanglement at the end > at the start, positive Spearman correlation with the step")
            + _per_dataset("Fig. 6", "Fig. 6: SNNL generator covers every class", "varied digits of all classes",
                           "snnl_gan", by_exp.get("snnl_gan", []), ["mnist"], lambda r: r["dataset"], coverage,
                           "a CNN classifies ≥ 1% of the samples as each class")
            + _per_dataset("Fig. 23", "Fig. 23: SNNL-GAN in a learned space", "samples approach the data",
                           "snnl_gan_learned", by_exp.get("snnl_gan_learned", []), ["mnist"], lambda r: r["dataset"],
                           rises, "real/synthetic pixel-space entanglement rises (end > start)"))


# ---- representations over training (Figs. 15, 3, 16), Figs. 7, 8 and Section 2 ------------------
def fig15_items(recs):
    def judge(rec):
        a, b = rec["metrics"]["batch_snnl_start"], rec["metrics"]["batch_snnl_end"]
        return ("; ".join(f"{n} {a[n]:.2f} → {b[n]:.2f}" for n in a), all(b[n] < a[n] for n in a),
                "training-batch SNNL at the learned T, first vs last logged batches")
    return _per_dataset("Fig. 15", "Fig. 15: per-layer SNNL over training (CE only)", "decreases in every layer",
                        "fig15", recs, ["mnist"], _stands, judge, "last < first in every hidden layer")


def fig3_16_items(recs):

    def fig16(rec):
        r = LayerEntanglement.from_record(rec)
        kept = {n: v[-1] / v[0] for n, v in r.entanglement.items() if n in r.blocks and v[0] > 0}
        last, lower = r.blocks[-2], r.blocks[:-2]
        return (", ".join(f"{n} {100 * kept[n]:.0f}%" for n in r.blocks[:-1] if n in kept) + " kept",
                all(kept[last] < kept[n] for n in lower if n in kept), f"{rec['config'].get('steps')} steps, cosine")

    def fig3(rec):
        r = LayerEntanglement.from_record(rec)
        inner, out = r.last_block[:-1], r.last_block[-1]
        curve = r.entanglement
        rose = [n for n in inner if curve[n][-1] > min(curve[n]) and curve[n].index(min(curve[n])) > 0]
        return ("; ".join(f"{n} {curve[n][0]:.3f} → min {min(curve[n]):.3f} → {curve[n][-1]:.3f}"
                          for n in r.last_block), len(rose) == len(inner) and curve[out][-1] < curve[out][0], "")
    return (_per_dataset("Fig. 16", "Fig. 16: per residual block", "lower blocks stay entangled, the last disentangles",
                         "fig3_16", recs, ["cifar10"], _stands, fig16,
                         "the last block keeps a smaller share of its entanglement than every lower block")
            + _per_dataset("Fig. 3", "Fig. 3: inside the last block", "inner layers re-entangle, the output does not",
                           "fig3_16", recs, ["cifar10"], _stands, fig3,
                           "inner layers rise after their minimum; the block's output ends below its start"))


def fig7_items(recs):
    name, paper = "Fig. 7: test accuracy against alpha", "large alpha (maximising entanglement) is best"
    crit = "the best mean test accuracy is at an alpha > 0"
    if not recs:
        return [report_item("Fig. 7", name + " (cifar10)", paper, "fig7", criterion=crit)]
    acc: dict[float, list[float]] = {}
    for r in recs:
        acc.setdefault(float(r["config"]["alpha"]), []).append(100 * r["metrics"]["test_accuracy"])
    mean = {a: sum(v) / len(v) for a, v in acc.items()}
    best = max(mean, key=mean.get)
    flat = [x for v in acc.values() for x in v]
    ours = f"best alpha {best:g} ({mean[best]:.2f}%)" + (f"; alpha 0: {mean[0.0]:.2f}%" if 0.0 in mean else "")
    return [report_item("Fig. 7", name, paper, "fig7", recs, ours=ours, status=verdict(best > 0), criterion=crit,
                  spread=f"{min(flat):.2f}–{max(flat):.2f}%",
                  note=f"{len(acc)} alphas, mean accuracy (%) per alpha: "
                       + ", ".join(f"{a:g}: {mean[a]:.2f}" for a in sorted(mean)) + " (paper: 64 ResNet runs)")]


def fig8_items(recs):
    def curves(rs):
        h = [r["history"] for r in rs]
        mean = {k: [sum(x) / len(x) for x in zip(*(hh[k] for hh in h))] for k in ("train_ce", "test_ce")}
        i = mean["test_ce"].index(min(mean["test_ce"]))
        return h[0]["eval_step"][i], mean["test_ce"][-1] - mean["train_ce"][-1]

    var = {"baseline": [r for r in recs if float(r["config"]["alpha"]) == 0],
           "entangled": [r for r in recs if float(r["config"]["alpha"]) > 0]}
    name, paper = "Fig. 8: overfitting over long training", "entangled overfits ~5,000 steps later, and less"
    crit = "entangled: test-CE minimum later and final test − train CE gap smaller"
    if not all(var.values()):
        return [report_item("Fig. 8", name + " (svhn)", paper, "fig8", recs, criterion=crit, status=NOT_RUN,
                      note="needs both variants" if recs else "")]
    (sb, gb), (se, ge) = curves(var["baseline"]), curves(var["entangled"])
    return [report_item("Fig. 8", name, paper, "fig8", recs, criterion=crit, status=verdict(se > sb and ge < gb),
                  ours=f"minimum at step {se} vs {sb} ({se - sb:+d}); gap {ge:.3f} vs {gb:.3f}",
                  note=f"{len(var['baseline'])} + {len(var['entangled'])} runs averaged")]


def synthetic_items(by_exp):
    def fig1(rec):
        i, f = rec["metrics"]["initial"], rec["metrics"]["final"]
        return (f"1-NN purity {i['purity']:.2f} → {f['purity']:.2f}; loss {i['loss']:.3f} → {f['loss']:.3f}",
                f["purity"] > i["purity"] and f["loss"] < i["loss"], "")

    def fig13(rec):
        i, f = rec["metrics"]["initial"], rec["metrics"]["final"]
        return f"mode ARI {i['mode_ari']:.2f} → {f['mode_ari']:.2f}", f["mode_ari"] >= 0.9, ""

    def fig2(rec):
        m = rec["metrics"]
        t, s = m["triplet_max"]["radial_cv"], m["snnl_max"]["radial_cv"]
        return f"radial CV: triplet max {t:.2f}, SNNL max {s:.2f} (circle 0, disc 0.35)", t < s, ""

    def eq2(rec):
        m, grid = rec["metrics"], (rec.get("history") or {}).get("loss") or []
        floor = min([m["loss_at_t_min"], m["loss_at_t_max"], *grid])
        return (f"min {m['entanglement']:.3f} at T={m['temperature']:.3g}; lowest on the grid {floor:.3f}",
                m["entanglement"] <= floor + 1e-6, "at the searched range's edge" if m["at_boundary"] else "")

    spec = [("figure1", "Fig. 1: minimising SNNL isolates the classes", "classes become isolated", fig1,
             "1-NN purity up and loss down"),
            ("figure13", "Fig. 13: two modes per class are kept", "both modes preserved", fig13,
             "per-class 2-means split matches the modes (ARI ≥ 0.9)"),
            ("figure2", "Fig. 2: SNNL vs triplet, maximised", "triplet: a circle; SNNL: spread out", fig2,
             "maximised triplet closer to a circle (lower radial CV) than maximised SNNL"),
            ("temperature_curve", "Eq. 2: entanglement = min over T", "the loss minimised over T", eq2,
             "the searched minimum is at or below the loss at every T of a log grid")]
    note = "the book's Section 2 chapter runs these at every profile"
    items = []
    for exp, name, paper, judge, crit in spec:
        rows = _per_dataset("Section 2", name, paper, exp, by_exp.get(exp, []), [] if by_exp.get(exp) else
                            ["synthetic"], lambda r: r["dataset"], judge, crit)
        items += [{**r, "note": r["note"] or note} for r in rows]
    return items
