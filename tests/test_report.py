"""The reproduction report: statuses from synthetic paper-profile records, and the real records."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from conftest import REPO
from snnl.experiments.report import ledger as rp
from snnl.experiments.regularization.table1 import PAPER_TABLE1
from snnl.results import write_record

_clock = itertools.count()


def write(root, experiment, dataset, metrics, config=None, seed=0, profile="paper", history=None,
          commit="0123456789abcdef-dirty", device="cuda (NVIDIA H100)"):
    """A record as snnl.Run writes it, one second after the previous one."""
    t = next(_clock)
    rec = {"experiment": experiment, "profile": profile, "dataset": dataset, "seed": seed, "config": config or {},
           "metrics": metrics, "device": device, "torch_version": "2.0", "git_commit": commit,
           "started_at": f"2026-01-01T00:{t // 60:02d}:{t % 60:02d}+00:00", "wall_seconds": 1.0}
    if history is not None:
        rec["history"] = history
    return write_record(root / experiment / f"{experiment}_{dataset}_{seed}_{t}.json", rec)


def table1(root, dataset, alpha, accs, steps=14000, **config):
    for seed, acc in enumerate(accs):
        write(root, "table1", dataset, {"test_accuracy": acc},
              {"alpha": alpha, "steps": steps, "model": "cnn", **config}, seed=seed)


def find(items, text, end=False):
    hits = [i for i in items if (i["item"].endswith(text) if end else text in i["item"])]
    assert len(hits) == 1, (text, [i["item"] for i in hits])
    return hits[0]


def test_empty_folder_lists_every_item_as_not_run(tmp_path):
    items = rp.reproduction_report(tmp_path / "nothing-here")
    assert len(items) >= 40
    assert {i["status"] for i in items} == {rp.NOT_RUN}
    for ds in PAPER_TABLE1:
        assert find(items, f"Table 1: {ds}, entangled (alpha=10), best")["paper"].startswith(
            f"{PAPER_TABLE1[ds]['best'][0]:.2f}")
    assert len([i for i in items if i["item"].startswith("Table 2")]) == 4
    assert all(i["runs"] in (0, "0 (paper 4)", "0 (paper 100)") and i["ours"] == "–" for i in items)
    assert rp.counts(items)[rp.NOT_RUN] == len(items)
    paper = rp.paper_items(items)
    assert rp.headline(items).startswith(f"{len(paper)} paper items: 0 matches")
    checks = rp.self_checks(items)  # Eq. 2's search and our variants are listed apart, never counted
    assert checks and all(i["kind"] in (rp.SELF_CHECK, rp.VARIANT) for i in checks)
    assert {i["item"].split(":")[0] for i in checks if i["kind"] == rp.SELF_CHECK} == {"Eq. 2"}
    assert len(paper) + len(checks) == len(items)


def test_table1_statuses_runs_spread_and_provenance(tmp_path):
    table1(tmp_path, "mnist", 10.0, [0.9920, 0.9925, 0.9910, 0.9915])  # best 99.25, mean 99.175
    table1(tmp_path, "mnist", 10.0, [0.10], steps=100)  # a shorter run: not the paper's recipe, ignored
    table1(tmp_path, "mnist", 0.0, [0.970, 0.972])  # best 97.2, mean 97.1: far below the paper
    table1(tmp_path, "fashion-mnist", 0.0, [0.90])
    table1(tmp_path, "fashion-mnist", 10.0, [0.88], substitute_for="svhn")
    write(tmp_path, "table1", "mnist", {"test_accuracy": 0.2}, {"alpha": 10.0, "steps": 14000}, profile="small")
    items = rp.reproduction_report(tmp_path)
    best, mean = find(items, "Table 1: mnist, entangled (alpha=10), best"), find(items, "Table 1: mnist, entangled (alpha=10), mean")
    assert (best["ours"], best["status"]) == ("99.25", rp.MATCHES)
    assert mean["ours"] in ("99.17", "99.18") and mean["status"] == rp.MATCHES
    assert best["runs"] == "4 (paper 4)" and best["spread"] == "99.10–99.25" and mean["spread"].startswith("std 0.06")
    assert best["dataset"] == "mnist" and best["device"] == "cuda (NVIDIA H100)" and best["commit"] == "0123456-dirty"
    base = find(items, "Table 1: mnist, baseline (alpha=0), mean")
    assert (base["ours"], base["status"], base["runs"]) == ("97.10", rp.NO_MATCH, "2 (paper 4)")
    assert find(items, "Table 1: mnist, entangled beats baseline")["status"] == rp.HOLDS
    fm = find(items, "Table 1: fashion-mnist, entangled beats baseline")
    assert fm["status"] == rp.NOT_RUN and "only the baseline" in fm["note"]
    svhn = find(items, "Table 1: svhn, entangled (alpha=10), best")
    assert svhn["dataset"] == "fashion-mnist (substitute for svhn)" and svhn["status"] == rp.NO_MATCH
    assert "(sic)" in find(items, "Table 1: svhn, baseline (alpha=0), mean")["paper"]
    assert find(items, "Table 1: cifar10, entangled (alpha=10), best")["status"] == rp.NOT_RUN


def test_a_rerun_replaces_the_same_run(tmp_path):
    table1(tmp_path, "mnist", 0.0, [0.50])
    table1(tmp_path, "mnist", 0.0, [0.988])  # same seed and config, newer
    item = find(rp.reproduction_report(tmp_path), "Table 1: mnist, baseline (alpha=0), best")
    assert (item["ours"], item["runs"], item["status"]) == ("98.80", "1 (paper 4)", rp.MATCHES)


EPS = [i / 100 for i in range(30)]  # 30 attack strengths: enough for a correlation's interval


def cal_summary(rows):
    return {"eps": EPS, "summary": [{"model": m, "attack": a, "pearson": r, "gap": g} for m, a, r, g in rows]}


def test_calibration_triplet_and_transfer_claims(tmp_path):
    write(tmp_path, "dknn_calibration", "mnist", cal_summary([
        ("baseline", "fgsm", 0.3, 0.3), ("entangled", "fgsm", 0.99, 0.1),  # holds: Zou's CI above 0
        ("baseline", "bim", 0.99, 0.3), ("entangled", "bim", 0.3, 0.2),  # does not hold: below 0
        ("baseline", "bim_source", 0.8, 0.3), ("entangled", "bim_source", 0.85, 0.3),  # inconclusive
        ("baseline", "bim_zero", 0.8, 0.3), ("entangled", "bim_zero", None, 0.2)]),  # no r: no interval
          {"steps": 14000, "bim_steps": 50, "n_test": 1000, "eps": EPS})
    write(tmp_path, "dknn_calibration_triplet", "mnist", cal_summary([
        ("baseline", "fgsm", 0.3, 0.3), ("triplet", "fgsm", 0.99, 0.1)]), {"alpha": 1e-3, "eps": EPS})
    pairs = [{"source": s, "victim": v, "mean_model_accuracy": a} for s, v, a in
             (("entangled", "baseline", 0.9), ("baseline_source", "baseline", 0.3))]
    write(tmp_path, "transferability", "fashion-mnist", {"eps": [0, 0.1], "pairs": pairs},
          {"steps": 3000, "n_test": 1000, "bim_steps": 50})
    items = rp.reproduction_report(tmp_path)
    assert find(items, "(mnist), fgsm")["status"] == rp.HOLDS
    assert find(items, "(mnist), bim_source")["status"] == rp.INCONCLUSIVE
    assert find(items, "(mnist), bim_zero")["status"] == rp.INCONCLUSIVE
    bim = find(items, "(mnist), bim", end=True)
    assert bim["status"] == rp.FAILS and bim["ours"].startswith("entangled r 0.300 vs 0.990 (-0.690, 95% CI [")
    assert bim["reduced"] == "BIM 50 of 1,000 steps"  # the victims' 14,000 steps are the paper's
    assert find(items, "Fig. 9: DkNN calibration (svhn), fgsm")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 19: DkNN calibration (fashion-mnist), fgsm")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 14")["status"] == rp.FAILS  # the triplet model improved: the paper says it does not
    transfer = find(items, "transfer from an entangled model (fashion-mnist)")
    assert transfer["status"] == rp.HOLDS and "(+0.600, 95% CI [0." in transfer["ours"]
    assert transfer["reduced"] == "BIM 50 of 1,000 steps, victims 3,000 of 14,000 steps"  # a smaller scale is said
    assert "victims 3,000 of 14,000 steps" in rp.status_text(transfer)
    assert find(items, "transfer from an entangled model (mnist)")["status"] == rp.NOT_RUN


def test_geometry_and_table2_claims(tmp_path):
    write(tmp_path, "ood", "mnist+notmnist", {m: {"auroc_credibility": a, "auroc_softmax": 0.5} for m, a in
                                              (("baseline", 0.7), ("entangled", 0.9))}, {"n_eval": 2000})
    write(tmp_path, "adversarial_gradients", "mnist", {p: {"cross_model_knn_accuracy": a, "cosine_sign": 0.1}
                                                       for p, a in (("baseline", 0.8), ("entangled", 0.2), ("mixed", 0.1))},
          {"n_points": 500})
    write(tmp_path, "adversarial_gradients", "fashion-mnist",  # near chance: not "aligned", whatever the rest
          {p: {"cross_model_knn_accuracy": a, "cosine_sign": 0.1} for p, a in
           (("baseline", 0.15), ("entangled", 0.07), ("mixed", 0.0))}, {"n_points": 500})
    write(tmp_path, "hidden_adversarial", "fashion-mnist", {m: {"knn_accuracy_layer": a} for m, a in
                                                            (("baseline", 0.6), ("entangled", 0.9))}, {"n_points": 1000})
    layer = lambda b, p, sd=0.01: {"baseline_snnl_at_T": b, "pgd_snnl_at_T": p, "baseline_entanglement": b / 2,
                                   "pgd_entanglement": p / 2, "baseline_entanglement_std": sd, "pgd_entanglement_std": sd}
    rows = {"conv1": layer(1.0, 2.0), "conv2": layer(1.0, 0.5), "fc1": layer(1.0, 0.5), "fc2": layer(1, 1),
            "logits": layer(0.2, 0.21, sd=0.1)}
    write(tmp_path, "table2", "mnist", {"rows": rows, "n_batches": 10},
          {"table2_temperature": 100.0, "table2_batch": 128, "adv_train_steps": 2500})
    items = rp.reproduction_report(tmp_path)
    assert find(items, "(mnist+notmnist)")["status"] == rp.HOLDS
    assert find(items, "(svhn+cifar10)")["status"] == rp.NOT_RUN
    assert find(items, "gradients aligned (mnist)")["status"] == rp.HOLDS
    assert find(items, "gradients aligned (fashion-mnist)")["status"] == rp.FAILS  # 0.15: near chance
    assert find(items, "Fig. 22")["status"] == rp.HOLDS
    statuses = {i["item"].split(" (")[0]: i["status"] for i in items if i["item"].startswith("Table 2")}
    assert statuses == {"Table 2: Conv1": rp.HOLDS, "Table 2: Conv2": rp.FAILS,  # paper: PGD higher
                        "Table 2: Fully Connected layer": rp.HOLDS, "Table 2: Logits": rp.INCONCLUSIVE}
    conv1 = find(items, "Conv1")
    assert conv1["runs"] == "1 pair, 10 batches of 128" and conv1["reduced"] == "PGD training 2,500 of 100,000 steps"
    assert conv1["ours"].startswith("entanglement, PGD-trained 1.00 vs baseline 0.50 (+0.50, 95% CI [")


def test_training_curve_and_gan_claims(tmp_path):
    steps = [0, 10, 20, 30, 40, 50, 60, 70]
    ent = {"block1": [1.0, 0.98, 0.97, 0.96, 0.97, 0.96, 0.97, 0.96],
           "block2": [1.0, 0.92, 0.9, 0.91, 0.9, 0.89, 0.9, 0.91],
           "block3.conv1": [0.9, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8],
           "block3.conv2": [0.9, 0.6, 0.62, 0.64, 0.66, 0.68, 0.7, 0.72],
           "block3": [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.28], "pool": [1.0, 0.5, 0.4, 0.3, 0.2, 0.2, 0.2, 0.2]}
    write(tmp_path, "fig3_16", "fashion-mnist", {"test_accuracy": 0.9},
          {"figure": "3", "model": "resnet", "distance": "cosine", "substitute_for": "cifar10", "steps": 10000,
           "batch_size": 64},
          history={"step": [0], "snnl": {}, "temperature": {}, "measure_step": steps, "entanglement": ent})
    falls = [2.0 - 0.05 * i + 0.01 * (i % 3) for i in range(30)]
    rises = [1.0 + 0.05 * i + 0.01 * (i % 3) for i in range(30)]
    write(tmp_path, "fig15", "mnist", {"test_accuracy": 0.9},
          {"figure": "15", "model": "cnn1", "distance": "euclidean"},
          history={"step": list(range(30)), "snnl": {"conv1": falls, "fc1": rises}, "temperature": {},
                   "measure_step": [0], "entanglement": {"conv1": [1.0], "fc1": [1.0]}})
    for alpha, accs in ((-1.0, 0.5), (0.0, 0.6), (10.0, 0.7)):
        write(tmp_path, "fig7", "fashion-mnist", {"test_accuracy": accs}, {"alpha": alpha})
    curve = lambda low, gap: {"eval_step": list(range(70)), "train_ce": [1.0] * 69 + [0.1],
                              "test_ce": [1.0 - 0.95 * (s == low) for s in range(69)] + [0.1 + gap]}
    for seed, (b, e) in enumerate(((10, 40), (20, 51))):  # the entangled run's minimum 30, 31 steps later
        write(tmp_path, "fig8", "fashion-mnist", {}, {"alpha": 0.0, "substitute_for": "svhn", "steps": 70,
                                                      "n_train": 6000}, seed=seed, history=curve(b, 0.8 + 0.01 * seed))
        write(tmp_path, "fig8", "fashion-mnist", {}, {"alpha": 10.0, "substitute_for": "svhn", "steps": 70,
                                                      "n_train": 6000}, seed=seed, history=curve(e, 0.2 + 0.011 * seed))
    gan = lambda a, b, **m: {"entanglement_start": a, "entanglement_end": b, "entanglement_spearman": 0.5, **m}
    rising = {"measure_step": [0, 1, 2, 3, 4, 5], "entanglement": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    write(tmp_path, "gan_entanglement", "mnist", gan(0.1, 0.6), {"variant": "dcgan"}, history=rising)
    write(tmp_path, "snnl_gan", "mnist", gan(0.1, 0.6, class_coverage=9, class_histogram=[0.1] * 9 + [0.0],
                                             classified_samples=2000), {"g_loss": "maximize"}, history=rising)
    write(tmp_path, "snnl_gan", "mnist", gan(0.1, 0.6, class_coverage=10, class_histogram=[0.1] * 10,
                                             classified_samples=2000), {"g_loss": "nonsaturating"}, history=rising)
    items = rp.reproduction_report(tmp_path)
    f16 = find(items, "Fig. 16")
    assert f16["status"] == rp.HOLDS and f16["dataset"] == "fashion-mnist (substitute for cifar10)"
    assert f16["reduced"] == "10,000 of the paper's 20,776 steps, batch 64 of 256"
    assert find(items, "Fig. 3:")["status"] == rp.HOLDS
    assert find(items, "Fig. 15")["status"] == rp.FAILS  # fc1 rose, with an interval above 0
    f7 = find(items, "Fig. 7 variant")
    assert f7["kind"] == "variant" and find(items, "Fig. 7: test accuracy")["status"] == rp.NOT_RUN
    assert f7["status"] == rp.HOLDS and f7["ours"].startswith("best alpha > 0: 10 (70.00%) vs best alpha <= 0: 0 (60.00%)")
    assert f7["note"] == "mean test accuracy (%) per alpha: -1: 50.00, 0: 60.00, 10: 70.00"
    assert find(items, "Fig. 8: overfitting over long training (svhn)")["status"] == rp.NOT_RUN  # no real SVHN
    f8 = find(items, "Fig. 8: overfitting over long training", end=True)
    assert f8["status"] == rp.HOLDS and f8["dataset"] == "fashion-mnist (substitute for svhn)"
    assert f8["reduced"] == "6,000 training images, 70 of the paper's 30,000 steps" and f8["runs"] == "2 + 2"
    assert find(items, "(mnist, dcgan)")["status"] == rp.HOLDS
    assert find(items, "(mnist, fc)")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 6: SNNL generator")["status"] == rp.FAILS  # the paper's objective: a class never made
    variant = find(items, "Fig. 6 with our non-saturating")
    assert variant["status"] == rp.HOLDS and variant["kind"] == rp.VARIANT and variant not in rp.paper_items(items)


def test_unknown_formats_and_foreign_files_do_not_break_the_report(tmp_path):
    write(tmp_path, "dknn_calibration", "mnist", {"no": "summary"})
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a record
    table1(tmp_path, "mnist", 0.0, [0.988])
    items = rp.reproduction_report(tmp_path)
    bad = [i for i in items if i["status"] == rp.ERROR]
    assert len(bad) == 1 and bad[0]["experiment"] == "dknn_calibration" and "KeyError" in bad[0]["note"]
    assert "dknn_calibration_mnist_0_" in bad[0]["note"]  # the row names the record's file
    assert find(items, "Table 1: mnist, baseline (alpha=0), best")["status"] == rp.MATCHES
    assert find(items, "DkNN calibration (mnist), fgsm")["status"] == rp.NOT_RUN  # the item's other rows are there


def test_a_bug_in_an_items_code_raises(tmp_path, monkeypatch):
    table1(tmp_path, "mnist", 0.0, [0.988, 0.989])
    bugs = [lambda records: 1 / 0,  # not an error of reading a record
            lambda records: {}["missing"],  # fails without any record
            lambda records: [] if len(records.get("table1", [])) < 2 else {}["missing"]]  # each record reads alone
    for bug in bugs:
        monkeypatch.setattr(rp, "SECTIONS", [(("table1",), bug)])
        with pytest.raises((ZeroDivisionError, KeyError)):
            rp.reproduction_report(tmp_path)


def test_format_report_is_a_markdown_table(tmp_path):
    items = rp.reproduction_report(tmp_path)
    items[0] = {**items[0], "ours": "a | b"}
    lines = rp.format_report(items).splitlines()
    assert len(lines) == len(items) + 2 and lines[1] == "|" + "---|" * len(rp.COLUMNS)
    assert all(line.replace("\\|", "").count("|") == len(rp.COLUMNS) + 1 for line in lines)
    assert "a \\| b" in lines[2]


def test_cli_prints_the_headline(tmp_path, capsys):
    table1(tmp_path, "mnist", 0.0, [0.988])
    assert rp.main(["--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == rp.headline(rp.reproduction_report(tmp_path))


def test_the_committed_records_are_all_understood():
    items = rp.reproduction_report(REPO / "results")
    assert [i["item"] for i in items if i["status"] == rp.ERROR] == []
    assert all(i["status"] in rp.STATUSES for i in items)
    assert all(i["regenerate"] for i in items), "every item says how its record is made"


def test_update_readme_rewrites_only_its_block(tmp_path):
    table1(tmp_path, "mnist", 0.0, [0.988])
    items = rp.reproduction_report(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{rp.README_START}\n\nafter\n")
    assert rp.update_readme(readme, items)  # first time: only the start marker
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith(f"{rp.README_END}\n\nafter\n")
    assert rp.headline(items) in text and "98.80" in text  # the mnist baseline row, run
    assert "svhn" not in text  # items not run are left out
    assert not rp.update_readme(readme, items)  # idempotent
    readme.write_text("no marker\n")
    with pytest.raises(ValueError, match="report-headline"):
        rp.update_readme(readme, items)


def test_the_readme_shows_the_committed_records():
    """README.md's summary is the report of the committed records (regenerate it with
    ``python -m snnl.experiments.report --readme README.md``)."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(rp.README_START):text.index(rp.README_END) + len(rp.README_END)]
    assert block == rp.readme_block(rp.reproduction_report(REPO / "results"), rp.additions(REPO / "results"))


def test_table1_runs_with_the_authors_formula_get_their_own_row(tmp_path):
    table1(tmp_path, "fashion-mnist", 10.0, [0.885, 0.884])  # Eq. 1, seeds 0 and 1
    table1(tmp_path, "fashion-mnist", 10.0, [0.889], regularizer="snnl-reference")  # seed 0
    items = rp.reproduction_report(tmp_path)
    exact = find(items, "Table 1: fashion-mnist, entangled (alpha=10), mean")
    assert exact["runs"] == "2 (paper 4)" and exact["ours"] == "88.45"  # the reference run is not mixed in
    ref = find(items, "Table 1: fashion-mnist, entangled (alpha=10) with the authors' formula")
    assert ref["ours"] == "88.90 vs 88.50 with Eq. 1 on the same seeds" and ref["runs"] == "1 (paper 4)"
    assert ref["paper"] == f"{PAPER_TABLE1['fashion-mnist']['mean'][0]:.2f}" and ref["status"] == rp.NO_MATCH
    assert not [i for i in items if i["item"].startswith("Table 1: mnist, entangled (alpha=10) with the authors'")]


# ---- the ledger as the book shows it -----------------------------------------------------------
def table_rows(markdown: str) -> list[list[list[str]]]:
    """The cells of every Markdown table in ``markdown`` (header and delimiter rows dropped)."""
    tables, rows = [], None
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            rows = [] if rows is None else rows
            rows.append([c.strip() for c in line.strip().strip("|").replace("\\|", "\0").split("|")])
        elif rows is not None:
            tables.append([[c.replace("\0", "|") for c in r] for r in rows[2:]])
            rows = None
    return tables


def test_every_item_has_its_paper_section_once_in_the_papers_order():
    items = rp.reproduction_report(REPO / "results")
    stray = {**items[0], "section": "Fig. 99", "item": "an item of a section the ledger does not know"}
    groups = rp.by_paper_section([stray, *items])
    assert [id(i) for _, _, g in groups for i in g] == [id(i) for i in items] + [id(stray)]  # each once
    headings = [h for h, _, _ in groups]
    assert headings[-1] == rp.OTHER and headings[:-1] == [h for h, _, _ in rp.PAPER_SECTIONS if h in headings]
    for heading, chapter, group in groups[:-1]:
        assert (REPO / "book" / f"{chapter}.py").exists()
        sections = next(s for h, _, s in rp.PAPER_SECTIONS if h == heading)
        assert all(i["section"] in sections for i in group)
    # every section the report knows (all items of an empty folder) has its paper section
    assert rp.OTHER not in [h for h, _, _ in rp.by_paper_section(rp.reproduction_report(REPO / "no-such-folder"))]


def test_status_badge_keeps_the_word():
    kinds, words = {}, {}
    for status in rp.STATUSES:
        badge = rp.status_badge(status)
        word = re.fullmatch(r'<span class="snnl-status snnl-status-(\w+)" title="([^"]+)">([^<]+)</span>', badge)
        assert word and word[2] == status, badge  # the full status as a tooltip
        kinds[status], words[status] = word[1], word[3]
    assert words == {rp.MATCHES: "matches", rp.NO_MATCH: "does not match", rp.HOLDS: "holds",
                     rp.FAILS: "does not hold", rp.INCONCLUSIVE: "inconclusive", rp.NOT_RUN: "not run",
                     rp.ERROR: "not evaluated"}
    assert kinds[rp.MATCHES] == kinds[rp.HOLDS] != kinds[rp.NO_MATCH] == kinds[rp.FAILS] != kinds[rp.NOT_RUN]
    assert len({kinds[rp.HOLDS], kinds[rp.FAILS], kinds[rp.INCONCLUSIVE], kinds[rp.NOT_RUN], kinds[rp.ERROR]}) == 5


def test_ledger_is_one_table_per_paper_section_with_paper_beside_ours():
    items = rp.paper_items(rp.reproduction_report(REPO / "results"))
    md = rp.format_ledger(items)
    groups = rp.by_paper_section(items)
    pages = lambda g: list(dict.fromkeys(rp.ITEM_SECTIONS[i["experiment"]][0] for i in g))
    assert [line for line in md.splitlines() if line.startswith("**")] == \
        [f"**{h}** ([chapter]({pages(g)[0]}.ipynb))" if len(pages(g)) == 1 else
         f"**{h}** (chapters: " + ", ".join(f"[{p}]({p}.ipynb)" for p in pages(g)) + ")" for h, _, g in groups]
    assert "**Section 5.2: transferability (Figs. 10, 11, 20)** (chapters: [adversarial](adversarial.ipynb), " \
        "[ood](ood.ipynb))" in md.splitlines()  # Figs. 10/11 are on the OOD page
    header = next(line for line in md.splitlines() if line.startswith("| item"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols.index("ours") == cols.index("paper") + 1
    tables = table_rows(md)
    assert [len(t) for t in tables] == [len(g) for _, _, g in groups]
    for rows, (_, _, group) in zip(tables, groups):
        for row, item in zip(rows, group):
            label = rp.ITEM_SECTIONS[item["experiment"]][1]
            assert row[cols.index("item")] == f"[{item['item']}](#{label})".replace("\n", " ")
            assert row[cols.index("status")] == rp.status_text(item, rp.status_badge(item["status"]))


def test_ledger_links_each_item_to_its_own_section_of_the_book():
    """Every experiment of the report has a section label, defined once in the book, on the page
    that shows it: a MyST target "(label)=" right above a heading of book/<page>.py."""
    items = rp.reproduction_report(REPO / "no-such-folder") + rp.reproduction_report(REPO / "results")
    assert {i["experiment"] for i in items} <= set(rp.ITEM_SECTIONS)
    sources = {p.stem: p.read_text() for p in (REPO / "book").glob("*.py")}
    for experiment, (page, label) in rp.ITEM_SECTIONS.items():
        found = [name for name, text in sources.items() if f"# ({label})=\n" in text]
        assert found == [page], f"{experiment}: label {label} defined in {found}, expected book/{page}.py"
        assert re.search(rf"^# \({re.escape(label)}\)=\n# #+ ", sources[page], re.M), f"{label}: not above a heading"
    assert rp.ITEM_SECTIONS["adversarial_gradients"][0] == "ood"  # Figs. 10/11 (Section 5.2) are on the OOD page
    # an item the map does not know links its paper section's chapter; one without either is not linked
    assert rp.item_link({"experiment": "new"}, "loss") == ("loss", "loss.ipynb")
    assert rp.item_link({"experiment": "new"}) == (None, "")
    md = rp.format_ledger([{**items[0], "experiment": "new", "section": "Fig. 99", "item": "a [new] item"}])
    assert "| a [new] item |" in md and "**Other items**\n" in md


def test_summary_counts_each_sections_statuses(tmp_path):
    table1(tmp_path, "mnist", 0.0, [0.988, 0.9885])
    items = rp.paper_items(rp.reproduction_report(tmp_path))
    md = rp.format_summary(items)
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert lines[1] == "|---|" + "---:|" * (len(header) - 1)  # the counts right-aligned
    kinds = [s for s in rp.STATUSES if any(i["status"] == s for i in items)]
    assert header == ["paper section", *map(rp.status_badge, kinds), "items"]
    rows = table_rows(md)[0]
    groups = rp.by_paper_section(items)
    assert [r[0] for r in rows] == [h.split(" (")[0] for h, _, _ in groups] + ["**all**"]
    for row, (_, _, group) in zip(rows, groups):
        for k, status in enumerate(kinds, 1):
            n = sum(i["status"] == status for i in group)
            assert row[k] == (str(n) if n else "–")
        assert row[-1] == str(len(group))
    assert rows[-1][1:] == [f"**{sum(i['status'] == s for i in items)}**" for s in kinds] + [f"**{len(items)}**"]
    assert rows[-1][kinds.index(rp.MATCHES) + 1] == "**2**"  # best and mean of the baseline


def test_format_report_right_aligns_the_columns_named():
    lines = rp.format_report([{"a": "x", "b": 1}], columns=("a", "b"), right=("b",)).splitlines()
    assert lines[1] == "|---|---:|" and lines[2] == "| x | 1 |"


def test_malformed_records_are_skipped_with_a_warning(tmp_path):
    table1(tmp_path, "mnist", 10.0, [0.9920, 0.9925])
    want = rp.format_report(rp.reproduction_report(tmp_path))
    rec = {"experiment": "table1", "profile": "paper", "dataset": "mnist", "seed": 0, "metrics": {},
           "device": "cpu", "torch_version": "2.0", "git_commit": "x", "wall_seconds": 1.0}
    bad = {"null.json": "null", "number.json": "7", "config.json": {**rec, "config": "alpha=10", "started_at": "t"},
           "started.json": {**rec, "config": {}, "started_at": 3}}
    for name, content in bad.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    (tmp_path / "bytes.json").write_bytes(b"\xff\xfe{")
    with pytest.warns(RuntimeWarning) as caught:
        got = rp.format_report(rp.reproduction_report(tmp_path))
    assert got == want
    assert all(any(name in str(w.message) for w in caught) for name in [*bad, "bytes.json"])


def test_study_headline_lists_every_cell_of_the_authors_recipe():
    from snnl.experiments.report.ledger import study_headline
    row = lambda cell, profile, diff, verdict: {
        "experiment": "table1_study", "item": f"Table 1 study: {cell} ({profile}, 2814 steps)",
        "ours": f"98.19 ± 0.08 [98.05, 98.32] vs 98.76 ± 0.15 [98.52, 99.01]: {diff}", "runs": "4 + 4",
        "verdict": verdict}
    line = study_headline([row("zoo-mnist", "paper", "-0.58 [-0.70, -0.46], p = 5.4e-04", "entangling hurts"),
                           row("zoo-fmnist", "paper", "-2.00 [-2.43, -1.58], p = 6.4e-04", "entangling hurts"),
                           row("cnn-mnist-a1", "screen", "-1.21, p = –", "too few runs")])
    assert "zoo-mnist -0.58 [-0.70, -0.46], p = 5.4e-04 (4 + 4 runs): entangling hurts" in line
    assert "zoo-fmnist -2.00 [-2.43, -1.58]" in line and "cnn-mnist-a1" not in line.split("Cells")[0]
    assert line.endswith("Cells with records: 3 (entangling hurts: 2, too few runs: 1).")
    assert study_headline([]) == "Table 1 study: no records yet."


def test_a_chapters_rows_at_a_glance_show_badges_reductions_and_variants():
    from snnl.experiments.common.rows import at_a_glance
    rows = [rp.report_item("Fig. 1", "Fig. 1: a claim", "paper says", "figure1", status=rp.HOLDS, ours="0.5 vs 0.1",
                           reduced="BIM 50 of 1,000 steps"),
            rp.report_item("Fig. 6", "Fig. 6 variant", "paper", "snnl_gan", status=rp.INCONCLUSIVE, kind=rp.VARIANT)]
    table = at_a_glance(rows)
    lines = table.splitlines()
    assert lines[0] == "| item | paper | ours | status |" and len(lines) == 4
    assert 'snnl-status-ok' in lines[2] and "(BIM 50 of 1,000 steps)" in lines[2]
    assert "*(variant)*" in lines[3] and "snnl-status-unsure" in lines[3] and ">inconclusive<" in lines[3]


def test_status_text_names_reductions_and_uncommitted_code():
    recs = [{"git_commit": "abcdef1234-dirty", "device": "cpu", "dataset": "mnist"}]
    row = rp.report_item("Fig. 1", "x", "p", "figure1", recs, status=rp.HOLDS, reduced="victims 3,000 of 14,000 steps")
    assert row["uncommitted"] == "abcdef1-dirty"
    assert rp.status_text(row) == (f"{rp.HOLDS} (victims 3,000 of 14,000 steps; code uncommitted at run time: "
                                   "abcdef1-dirty)")
    clean = rp.report_item("Fig. 1", "x", "p", "figure1", [{**recs[0], "git_commit": "abcdef1234"}], status=rp.FAILS)
    assert rp.status_text(clean) == rp.FAILS


def test_self_checks_are_listed_apart_and_the_findings_read_the_records():
    items = rp.reproduction_report(REPO / "results")
    checks = rp.format_checks(items)
    assert "Eq. 2" in checks and "self-check" in checks
    assert not any(i["item"].startswith("Eq. 2") for i in rp.paper_items(items))
    f = rp.findings(items, REPO / "results")
    assert set(f) == {"table1", "ood", "holds"}
    assert f["holds"].startswith(f"Of the {len(rp.paper_items(items))} paper items")
    assert "95% CI" in f["table1"] and "p = " in f["table1"]
    assert "DkNN's median rank" in f["ood"]


def test_the_count_of_paper_items_does_not_depend_on_the_records(tmp_path):
    from snnl.experiments.report.ledger import paper_items, reproduction_report

    empty = [r["item"] for r in paper_items(reproduction_report(tmp_path))]
    committed = [r["item"] for r in paper_items(reproduction_report(REPO / "results"))]
    assert len(empty) == len(committed) and len(set(empty)) == len(empty)


def test_report_on_a_missing_folder_says_so_and_fails(tmp_path, capsys):
    from snnl.experiments.report.ledger import main

    assert main(["--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no folder" in err and "nope" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, says", [
    (["--models", "MISSING"], "read at the paper profile only"),
    (["--profile", "paper", "--models", "MISSING"], "does not exist"),
])
def test_ood_benchmark_refuses_a_models_folder_it_would_ignore_or_cannot_read(argv, says, tmp_path, capsys):
    from snnl.experiments.beyond.benchmark import main

    argv = [str(tmp_path / "nope") if a == "MISSING" else a for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
