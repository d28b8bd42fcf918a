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
    assert rp.headline(items).startswith(f"{len(items)} paper items: 0 matches")


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


def cal_summary(rows):
    return {"eps": [0, 0.1], "summary": [{"model": m, "attack": a, "pearson": r, "gap": g} for m, a, r, g in rows]}


def test_calibration_triplet_and_transfer_claims(tmp_path):
    write(tmp_path, "dknn_calibration", "mnist", cal_summary([
        ("baseline", "fgsm", 0.5, 0.3), ("entangled", "fgsm", 0.9, 0.1),  # holds
        ("baseline", "bim", 0.8, 0.3), ("entangled", "bim", 0.7, 0.2),  # does not hold
        ("baseline", "bim_zero", 0.8, 0.3), ("entangled", "bim_zero", None, 0.2)]),  # NaN never wins
          {"steps": 14000, "bim_steps": 50, "n_test": 1000})
    write(tmp_path, "dknn_calibration_triplet", "mnist", cal_summary([
        ("baseline", "fgsm", 0.8, 0.3), ("triplet", "fgsm", 0.9, 0.1)]), {"alpha": 1e-3})
    pairs = [{"source": s, "victim": v, "mean_model_accuracy": a} for s, v, a in
             (("entangled", "baseline", 0.9), ("baseline_source", "baseline", 0.3))]
    write(tmp_path, "transferability", "fashion-mnist", {"eps": [0, 0.1], "pairs": pairs}, {"steps": 3000})
    items = rp.reproduction_report(tmp_path)
    assert find(items, "(mnist), fgsm")["status"] == rp.HOLDS
    assert find(items, "(mnist), bim_zero")["status"] == rp.FAILS
    bim = find(items, "(mnist), bim", end=True)
    assert bim["status"] == rp.FAILS and bim["ours"] == "r 0.700 vs 0.800; gap 0.200 vs 0.300"
    assert find(items, "Fig. 9: DkNN calibration (svhn)")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 19: DkNN calibration (fashion-mnist)")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 14")["status"] == rp.FAILS  # the triplet model improved: the paper says it does not
    transfer = find(items, "transfer from an entangled model (fashion-mnist)")
    assert transfer["status"] == rp.HOLDS
    assert transfer["ours"].endswith("(victims 3000 steps, paper 14,000)")  # a smaller scale is said
    assert "victims" not in bim["ours"]  # the paper's 14,000 steps: nothing to say
    assert find(items, "transfer from an entangled model (mnist)")["status"] == rp.NOT_RUN


def test_geometry_and_table2_claims(tmp_path):
    write(tmp_path, "ood", "mnist+notmnist", {m: {"auroc_credibility": a, "auroc_softmax": 0.5} for m, a in
                                              (("baseline", 0.7), ("entangled", 0.9))})
    write(tmp_path, "adversarial_gradients", "mnist", {p: {"cross_model_knn_accuracy": a, "cosine_sign": 0.1}
                                                       for p, a in (("baseline", 0.8), ("entangled", 0.2), ("mixed", 0.85))})
    write(tmp_path, "hidden_adversarial", "fashion-mnist", {m: {"knn_accuracy_layer": a} for m, a in
                                                            (("baseline", 0.6), ("entangled", 0.9))})
    layer = lambda b, p: {"baseline_snnl_at_T": b, "pgd_snnl_at_T": p, "baseline_entanglement": b / 2,
                          "pgd_entanglement": p / 2, "baseline_snnl_at_T_std": 0.01, "pgd_snnl_at_T_std": 0.02}
    rows = {"conv1": layer(1.0, 2.0), "conv2": layer(1.0, 0.5), "fc1": layer(1.0, 0.5), "fc2": layer(1, 1),
            "logits": layer(0.1, 0.2)}
    write(tmp_path, "table2", "mnist", {"rows": rows, "n_batches": 10}, {"table2_temperature": 100.0, "table2_batch": 128})
    items = rp.reproduction_report(tmp_path)
    assert find(items, "(mnist+notmnist)")["status"] == rp.HOLDS
    assert find(items, "(svhn+cifar10)")["status"] == rp.NOT_RUN
    assert find(items, "gradients aligned (mnist)")["status"] == rp.FAILS  # the mixed pair is better aligned
    assert find(items, "Fig. 22")["status"] == rp.HOLDS
    statuses = {i["item"].split(" (")[0]: i["status"] for i in items if i["item"].startswith("Table 2")}
    assert statuses == {"Table 2: Conv1": rp.HOLDS, "Table 2: Conv2": rp.FAILS,  # paper: PGD higher
                        "Table 2: Fully Connected layer": rp.HOLDS, "Table 2: Logits": rp.HOLDS}
    assert find(items, "Conv1")["runs"] == "1 pair, 10 batches of 128"


def test_training_curve_and_gan_claims(tmp_path):
    ent = {"block1": [1.0, 0.95, 0.9], "block2": [1.0, 0.9, 0.85], "block3.conv1": [0.9, 0.5, 0.8],
           "block3.conv2": [0.9, 0.6, 0.7], "block3": [1.0, 0.6, 0.3], "pool": [1.0, 0.5, 0.2]}
    write(tmp_path, "fig3_16", "fashion-mnist", {"test_accuracy": 0.9},
          {"figure": "3", "model": "resnet", "distance": "cosine", "substitute_for": "cifar10", "steps": 20},
          history={"step": [0], "snnl": {}, "temperature": {}, "measure_step": [0, 10, 20], "entanglement": ent})
    write(tmp_path, "fig15", "mnist", {"batch_snnl_start": {"conv1": 2.0, "fc1": 2.0},
                                       "batch_snnl_end": {"conv1": 1.0, "fc1": 2.1}})
    for alpha, accs in ((-1.0, 0.5), (0.0, 0.6), (10.0, 0.7)):
        write(tmp_path, "fig7", "fashion-mnist", {"test_accuracy": accs}, {"alpha": alpha})
    curve = lambda lo: {"eval_step": [0, 10, 20], "train_ce": [1.0, 0.5, 0.1], "test_ce": [1.0, *lo]}
    write(tmp_path, "fig8", "svhn", {}, {"alpha": 0.0}, history=curve([0.4, 0.9]))
    write(tmp_path, "fig8", "svhn", {}, {"alpha": 10.0}, history=curve([0.6, 0.3]))
    gan = lambda a, b, **m: {"entanglement_start": a, "entanglement_end": b, "entanglement_spearman": 0.5, **m}
    write(tmp_path, "gan_entanglement", "mnist", gan(0.1, 0.6), {"variant": "dcgan"})
    write(tmp_path, "snnl_gan", "mnist", gan(0.1, 0.6, class_coverage=9, class_histogram=[0.1] * 9 + [0.0]))
    items = rp.reproduction_report(tmp_path)
    f16 = find(items, "Fig. 16")
    assert f16["status"] == rp.HOLDS and f16["dataset"] == "fashion-mnist (substitute for cifar10)"
    assert find(items, "Fig. 3:")["status"] == rp.HOLDS
    assert find(items, "Fig. 15")["status"] == rp.FAILS  # fc1 rose
    assert find(items, "Fig. 7")["status"] == rp.HOLDS and "best alpha 10" in find(items, "Fig. 7")["ours"]
    assert "per alpha: -1: 50.00, 0: 60.00, 10: 70.00 (" in find(items, "Fig. 7")["note"]
    assert find(items, "Fig. 8")["status"] == rp.HOLDS
    assert find(items, "(mnist, dcgan)")["status"] == rp.HOLDS
    assert find(items, "(mnist, fc)")["status"] == rp.NOT_RUN
    assert find(items, "Fig. 6")["status"] == rp.FAILS  # one class never generated


def test_unknown_formats_and_foreign_files_do_not_break_the_report(tmp_path):
    write(tmp_path, "dknn_calibration", "mnist", {"no": "summary"})
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a record
    table1(tmp_path, "mnist", 0.0, [0.988])
    items = rp.reproduction_report(tmp_path)
    bad = [i for i in items if i["status"] == rp.ERROR]
    assert len(bad) == 1 and bad[0]["experiment"] == "dknn_calibration" and "KeyError" in bad[0]["note"]
    assert "dknn_calibration_mnist_0_" in bad[0]["note"]  # the row names the record's file
    assert find(items, "Table 1: mnist, baseline (alpha=0), best")["status"] == rp.MATCHES
    assert find(items, "DkNN calibration (mnist)")["status"] == rp.NOT_RUN  # the item's other rows are there


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
                     rp.FAILS: "does not hold", rp.NOT_RUN: "not run", rp.ERROR: "not evaluated"}
    assert kinds[rp.MATCHES] == kinds[rp.HOLDS] != kinds[rp.NO_MATCH] == kinds[rp.FAILS] != kinds[rp.NOT_RUN]
    assert len({kinds[rp.HOLDS], kinds[rp.FAILS], kinds[rp.NOT_RUN], kinds[rp.ERROR]}) == 4


def test_ledger_is_one_table_per_paper_section_with_paper_beside_ours():
    items = rp.reproduction_report(REPO / "results")
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
            assert row[cols.index("status")] == rp.status_badge(item["status"])


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
    items = rp.reproduction_report(tmp_path)
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
