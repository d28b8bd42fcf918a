"""The reproduction report: every number and claim of the paper next to ours (SPEC sections 5, 7).

:func:`reproduction_report` reads the committed paper-profile records (``results/``, through
:func:`snnl.load_records`) and returns one dict per paper item: the paper's value or claim, our
value, the number of runs, their spread, the data actually used (substitutes named as such),
device, commit(s), and a status:

* ``"matches"`` / ``"does not match"`` -- a paper number, within :data:`TABLE1_TOLERANCE`;
* ``"qualitative claim holds"`` / ``"qualitative claim does not hold"`` -- a claim the paper
  only draws, judged by the number the companion adds (the criterion is in each item);
* ``"not run at the paper profile"`` -- no record yet (listed, never hidden);
* ``"could not be evaluated"`` -- a record is there but lacks a field its item reads (or holds
  one of another type): the row names the record's file and the error, and the item's other
  records are read as usual. Any other failure of an item's ``report_items`` is a bug in the
  code and is raised, never turned into a row.

:func:`format_report` renders the items as a Markdown table, :func:`headline` counts them. The book
shows them with :func:`format_summary` (per paper section, how many items have each status) and
:func:`format_ledger` (one table per paper section, :data:`PAPER_SECTIONS`, the status as a
coloured badge that keeps its word, :func:`~snnl.experiments.common.rows.status_badge`).
The rows of each paper item are built next to the code that writes its records: ``report_items``
in each item's module (in its chapter's package),
with the vocabulary of :mod:`snnl.experiments.common.rows`; this module reads the records and
assembles the rows.
:func:`update_readme` writes the headline and the items run into the README.
Command line: ``python -m snnl.experiments.report [--results results] [--table] [--readme README.md]``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from snnl.experiments.ood import gradients as adversarial_gradients
from snnl.experiments.adversarial import calibration
from snnl.experiments.generative import gans as generative
from snnl.experiments.ood import hidden as hidden_adversarial
from snnl.experiments.ood import outliers as ood
from snnl.experiments.beyond import benchmark as ood_benchmark
from snnl.experiments.discriminative import representations
from snnl.experiments.ood import robustness
from snnl.experiments.loss import synthetic
from snnl.experiments.regularization import fig7, fig8, table1
from snnl.experiments.regularization import study as table1_study
from snnl.experiments.regularization.table1 import TABLE1_TOLERANCE  # noqa: F401
from snnl.experiments.common.rows import (  # noqa: F401 (re-exported: the report's vocabulary)
    BOOK, ERROR, FAILS, HOLDS, INCONCLUSIVE, MATCHES, NO_MATCH, NOT_RUN, PAPER_ITEM, REGENERATE, SELF_CHECK, STATUSES,
    STATUS_BADGES, VARIANT, report_item, short_commit, status_badge, status_text)
from snnl.experiments.common.records import paper_records  # noqa: F401 (re-exported)
from snnl.results import load_records
from snnl.stats import fmt_p



# ---- records --------------------------------------------------------------------------------
# ---- the report -------------------------------------------------------------------------------
SECTIONS = [  # (experiments whose records it reads, builder of their rows from the records by experiment)
    (("figure1", "figure13", "figure2", "temperature_curve"), synthetic.report_items),
    (("fig15", "fig3_16"), representations.report_items),
    (("gan_entanglement", "snnl_gan", "snnl_gan_learned"), generative.report_items),
    (("table1",), table1.report_items), (("fig7", "fig7_search"), fig7.report_items), (("fig8",), fig8.report_items),
    (("dknn_calibration", "dknn_calibration_triplet", "transferability"), calibration.report_items),
    (("adversarial_gradients",), adversarial_gradients.report_items),
    (("ood",), ood.report_items), (("hidden_adversarial",), hidden_adversarial.report_items),
    (("table2",), robustness.report_items),
]


# what reading a record that lacks a field, or holds one of another type, raises
RECORD_ERRORS = (KeyError, IndexError, TypeError, ValueError)


def reproduction_report(results_dir="results") -> list[dict]:
    """One dict per paper item (keys: section, item, paper, ours, runs, spread, dataset, device,
    commit, status, criterion, note, experiment, regenerate), from the paper-profile records
    under ``results_dir``. A record its item cannot read (:func:`unreadable`) gives a row with
    status ``"could not be evaluated"`` naming it, and its item's rows come from the other
    records; any other error is raised."""
    by_exp, items = paper_records(results_dir), []
    for exps, build in SECTIONS:
        try:
            items += build(by_exp)
        except RECORD_ERRORS:
            bad = unreadable(build, [r for x in exps for r in by_exp.get(x, [])])
            if not bad:  # the item's code fails on readable records: a bug, not a record's format
                raise
            skip = {id(r) for r, _ in bad}
            items += build({x: [r for r in by_exp.get(x, []) if id(r) not in skip] for x in exps})
            for rec, e in bad:
                items.append(report_item(exps[0], f"records of {', '.join(exps)}", "–", rec["experiment"], [rec],
                                         status=ERROR, note=f"{rec.get('path', 'a record')}: {type(e).__name__}: {e}"))
    return items


def unreadable(build, recs: list[dict]) -> list[tuple[dict, Exception]]:
    """The records that ``build`` (an item's ``report_items``) cannot read on their own, each with
    the error (one of :data:`RECORD_ERRORS`) it raised. ``build`` must run without any record:
    an error there is a bug in the item's code, and is raised."""
    build({})
    bad = []
    for rec in recs:
        try:
            build({rec["experiment"]: [rec]})
        except RECORD_ERRORS as e:
            bad.append((rec, e))
    return bad


def additions(results_dir="results") -> list[dict]:
    """Rows of what the companion adds to the paper (not paper items, not counted in the headline):
    the Table 1 recipe study (paper and screening runs) and the OOD benchmark (paper profile); keys
    ``item``, ``ours``, ``runs``, ``verdict``."""
    recs = load_records(results_dir)
    rows = table1_study.report_items([r for r in recs if r["experiment"] == table1_study.EXPERIMENT])
    for v in ood_benchmark.report_items([r for r in recs if r["experiment"] == ood_benchmark.EXPERIMENT
                                         and r["profile"] == "paper"]):
        diff = v.get("dknn_auroc_diff")
        rows.append({"item": v["item"], "runs": f"{v['seeds']} seeds", "experiment": ood_benchmark.EXPERIMENT,
                     "ours": ("DkNN AUROC entangled - baseline: " + ("–" if diff is None else f"{diff:+.3f}")
                              + f", p = {fmt_p(v.get('p'))}; best detector: {v.get('best_detector_baseline')} "
                              f"(baseline), {v.get('best_detector_entangled')} (entangled)"),
                     "verdict": f"entangling helps DkNN: {v['entangling_helps_dknn']}"})
    return rows


def study_headline(rows: list[dict]) -> str:
    """One line on the Table 1 study, from :func:`additions`'s rows: the authors' recipe's verdict
    and how many cells help, hurt or show no significant difference."""
    study = [r for r in rows if r.get("experiment") == table1_study.EXPERIMENT]
    if not study:
        return "Table 1 study: no records yet."
    zoo = [r for r in study if r["item"].startswith("Table 1 study: zoo") and "(paper," in r["item"]]
    c = Counter(r["verdict"] for r in study)
    cells = "; ".join(f"{r['item'].split(': ', 1)[1].split(' (')[0]} {r['ours'].split(': ', 1)[1]} "
                      f"({r['runs']} runs): {r['verdict']}" for r in zoo)
    return ("Table 1 study: " + (f"the authors' released recipe, entangled - baseline test accuracy (points, 95% CI, "
                                 f"p): {cells}. " if zoo else "")
            + f"Cells with records: {len(study)} (" + ", ".join(f"{k}: {n}" for k, n in sorted(c.items())) + ").")


def findings(items: list[dict], results_dir="results") -> dict[str, str]:
    """The main findings in one sentence each, from the records (the landing page shows them):
    ``table1`` (the authors' recipe, entangled - baseline with its 95% CI and p), ``ood`` (the OOD
    benchmark: on how many pairs entangling raises DkNN's AUROC, DkNN's median rank), ``holds``
    (which paper items hold or match, and how many do not or are inconclusive)."""
    study = [r for r in additions(results_dir) if r.get("experiment") == table1_study.EXPERIMENT]
    zoo = [r for r in study if r["item"].startswith("Table 1 study: zoo") and "(paper," in r["item"]]
    if zoo:
        cells = "; ".join(f"{r['item'].split(': ', 1)[1].split(' (')[0]} {r['ours'].split(': ', 1)[1]}" for r in zoo)
        hurt = sum(r["verdict"] == "entangling hurts" for r in zoo)
        table1_line = (f"Table 1 does not reproduce: with the authors' released recipe, entangling lowers test "
                       f"accuracy in {hurt} of {len(zoo)} cells (entangled - baseline, points, 95% CI, p: {cells}).")
    else:
        table1_line = "Table 1: no records of the authors' recipe yet."
    bench = [r for r in load_records(results_dir, ood_benchmark.EXPERIMENT) if r["profile"] == "paper"]
    ood_line = ("OOD benchmark (beyond the paper): " + ood_benchmark.overall_line(bench).replace("**", "")
                if bench else "OOD benchmark: no records yet.")
    paper = paper_items(items)
    c = counts(paper)
    held = ", ".join(dict.fromkeys(i["item"].split(":")[0] for i in paper if i["status"] == HOLDS)) or "none"
    matched = "; ".join(i["item"].replace(" test accuracy (%)", "") for i in paper if i["status"] == MATCHES)
    holds_line = (f"Of the {len(paper)} paper items, {c[HOLDS]} claims hold ({held}) and {c[MATCHES]} numbers match"
                  + (f" ({matched})" if matched else "") + f"; {c[FAILS] + c[NO_MATCH]} do not, {c[INCONCLUSIVE]} are "
                  f"inconclusive (the 95% interval contains no difference) and {c[NOT_RUN]} are not run at the "
                  "paper profile (most need SVHN or CIFAR-10, not available here).")
    return {"table1": table1_line, "ood": ood_line, "holds": holds_line}


def paper_items(items: list[dict]) -> list[dict]:
    """The rows that are paper items (counted in the headline and the summary)."""
    return [i for i in items if i.get("kind", PAPER_ITEM) == PAPER_ITEM]


def self_checks(items: list[dict]) -> list[dict]:
    """The rows that are not paper items: checks of the companion's own code, and our variants of
    paper items (each labelled as such); never counted with the paper's items."""
    return [i for i in items if i.get("kind", PAPER_ITEM) != PAPER_ITEM]


def counts(items: list[dict]) -> dict[str, int]:
    """Items per status, in :data:`STATUSES` order (zeros included)."""
    c = Counter(i["status"] for i in items)
    return {s: c.get(s, 0) for s in STATUSES}


def headline(items: list[dict]) -> str:
    """One line: how many paper items match / hold / do not / are inconclusive / are pending
    (self-checks and variants are not counted)."""
    paper = paper_items(items)
    c = counts(paper)
    parts = [f"{n} {s}" for s, n in c.items() if n or s in (MATCHES, NOT_RUN)]
    return f"{len(paper)} paper items: " + ", ".join(parts) + "."


def with_status_text(items: list[dict]) -> list[dict]:
    """``items`` with the status cell of :func:`~snnl.experiments.common.rows.status_text` (for
    :func:`format_report`)."""
    return [{**i, "status": status_text(i)} for i in items]


COLUMNS = ("item", "paper", "ours", "runs", "spread", "dataset", "device", "commit", "status", "criterion")


def format_report(items: list[dict], columns=COLUMNS, right=()) -> str:
    """The items as a Markdown table (``columns`` of each item; ``|`` escaped); the columns named
    in ``right`` (numbers) are right-aligned."""
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ") if v not in (None, "") else "–"
    lines = ["| " + " | ".join(columns) + " |", "|" + "".join("---:|" if c in right else "---|" for c in columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(i.get(c)) for c in columns) + " |" for i in items])


# ---- the ledger as the book shows it ------------------------------------------------------------
# The paper's sections in order: (heading, the book's chapter that runs them, the items' "section").
# Items of a section not listed here come last, under OTHER, so that none is ever left out.
PAPER_SECTIONS = (
    ("Section 2: the soft nearest neighbor loss (Figs. 1, 2, 13; Eq. 2)", "loss", ("Section 2",)),
    ("Section 3.1: discriminative models (Figs. 3, 15, 16)", "discriminative", ("Fig. 15", "Fig. 16", "Fig. 3")),
    ("Section 3.2: generative models (Figs. 4, 5, 6, 17, 23)", "generative", ("Figs. 4, 5, 17", "Fig. 6", "Fig. 23")),
    ("Section 4: entanglement as a regulariser (Table 1, Figs. 7, 8)", "regularization", ("Table 1", "Fig. 7", "Fig. 8")),
    ("Section 5.1: calibrated Deep k-NN uncertainty (Figs. 9, 14, 18, 19)", "adversarial",
     ("Fig. 9", "Fig. 18", "Fig. 19", "Fig. 14")),
    ("Section 5.2: transferability (Figs. 10, 11, 20)", "adversarial", ("Fig. 20", "Figs. 10, 11")),
    ("Section 5.3, Appendices E and H: out-of-distribution and adversarial inputs (Figs. 12, 21, 22; Table 2)",
     "ood", ("Figs. 12, 21", "Fig. 22", "Table 2")),
)
OTHER = "Other items"
# Where the book shows each item: the experiment of its records -> (the page, the label of the item's
# section on it: a MyST target "(label)=" above the section's heading in book/<page>.py). The ledger
# links every item there; an experiment not listed links the top of its paper section's chapter.
ITEM_SECTIONS = {
    "figure1": ("loss", "loss-fig1"), "figure13": ("loss", "loss-fig13"), "figure2": ("loss", "loss-fig2"),
    "temperature_curve": ("loss", "loss-eq2"),
    "fig15": ("discriminative", "discriminative-fig15"), "fig3_16": ("discriminative", "discriminative-fig3-16"),
    "gan_entanglement": ("generative", "generative-fig4-5-17"), "snnl_gan": ("generative", "generative-fig6"),
    "snnl_gan_learned": ("generative", "generative-fig23"),
    "table1": ("regularization", "regularization-table1"), "fig7": ("regularization", "regularization-fig7"),
    "fig7_search": ("regularization", "regularization-fig7"),
    "fig8": ("regularization", "regularization-fig8"),
    "dknn_calibration": ("adversarial", "adversarial-fig9-18-19"),
    "transferability": ("adversarial", "adversarial-fig20"),
    "dknn_calibration_triplet": ("adversarial", "adversarial-fig14"),
    "adversarial_gradients": ("ood", "ood-fig10-11"), "ood": ("ood", "ood-fig12-21"),
    "hidden_adversarial": ("ood", "ood-fig22"), "table2": ("ood", "ood-table2"),
}
LEDGER_COLUMNS = ("item", "paper", "ours", "status", "runs", "spread", "dataset")


def by_paper_section(items: list[dict]) -> list[tuple[str, str | None, list[dict]]]:
    """The items grouped by the paper's section, in the paper's order: ``(heading, chapter,
    items)`` for each section with items; every item exactly once, in its original order."""
    where = {s: k for k, (_, _, sections) in enumerate(PAPER_SECTIONS) for s in sections}
    groups = [(h, ch, [i for i in items if where.get(i["section"]) == k]) for k, (h, ch, _) in enumerate(PAPER_SECTIONS)]
    groups.append((OTHER, None, [i for i in items if i["section"] not in where]))
    return [g for g in groups if g[2]]


def item_link(item: dict, chapter: str | None = None) -> tuple[str | None, str]:
    """``(page, Markdown link target)`` of the section of the book that shows ``item``
    (:data:`ITEM_SECTIONS`: ``#label``, which MyST resolves on whichever page defines it), else of
    ``chapter``, the chapter of its paper section (``page.ipynb``); ``(None, "")`` without either."""
    page, label = ITEM_SECTIONS.get(item.get("experiment"), (chapter, None))
    return page, (f"#{label}" if label else f"{page}.ipynb" if page else "")


def format_ledger(items: list[dict], columns=LEDGER_COLUMNS) -> str:
    """The paper items as Markdown, one table per paper section (:func:`by_paper_section`), each
    under a bold line naming the section and linking the chapter(s) that show its items; every
    item linked to its own section of the book (:func:`item_link`); statuses as
    :func:`~snnl.experiments.common.rows.status_badge` with the reduced settings and uncommitted code
    of :func:`~snnl.experiments.common.rows.status_text`."""
    out = []
    for heading, chapter, group in by_paper_section(paper_items(items)):
        links = [item_link(i, chapter) for i in group]
        pages = list(dict.fromkeys(p for p, _ in links if p))
        link = (f" ([chapter]({pages[0]}.ipynb))" if len(pages) == 1 else
                " (chapters: " + ", ".join(f"[{p}]({p}.ipynb)" for p in pages) + ")" if pages else "")
        text = lambda i: str(i["item"]).replace("[", "\\[").replace("]", "\\]")
        rows = [{**i, "item": f"[{text(i)}]({target})" if target else i["item"],
                 "status": status_text(i, status_badge(i["status"]))} for i, (_, target) in zip(group, links)]
        out += [f"**{heading}**{link}", "", format_report(rows, columns), ""]
    return "\n".join(out).rstrip() + "\n"


CHECK_COLUMNS = ("item", "kind", "ours", "status", "criterion")


def format_checks(items: list[dict], columns=CHECK_COLUMNS) -> str:
    """The rows that are not paper items (:func:`self_checks`) as one Markdown table."""
    rows = [{**i, "status": status_text(i, status_badge(i["status"]))} for i in self_checks(items)]
    return format_report(rows, columns) + "\n" if rows else "None.\n"


def format_summary(items: list[dict]) -> str:
    """A Markdown table: per paper section (its heading without the list of figures), how many
    items have each status (the statuses that occur, as badges), then the total of every column."""
    items = paper_items(items)
    kinds = [s for s, n in counts(items).items() if n]
    head = {s: status_badge(s) for s in kinds}
    rows = []
    for heading, _, group in by_paper_section(items):
        c = Counter(i["status"] for i in group)
        rows.append({"paper section": heading.split(" (")[0], **{head[s]: c.get(s) or "–" for s in kinds},
                     "items": len(group)})
    total = counts(items)
    rows.append({"paper section": "**all**", **{head[s]: f"**{total[s]}**" for s in kinds}, "items": f"**{len(items)}**"})
    cols = ("paper section", *head.values(), "items")
    return format_report(rows, cols, right=cols[1:])


README_START, README_END = "<!-- report-headline -->", "<!-- /report-headline -->"


def readme_block(items: list[dict], extra: list[dict] = ()) -> str:
    """The README's summary of the report: the headline, the Table 1 study's headline (from the
    rows of :func:`additions`, ``extra``) and every item run at the paper profile (paper vs ours),
    between :data:`README_START` and :data:`README_END`."""
    paper = paper_items(items)
    ran = with_status_text([i for i in paper if i["status"] != NOT_RUN])
    pending = len(paper) - len(ran)
    return "\n".join([README_START, "", f"**{headline(items)}**", "",
                      *([study_headline(extra), ""] if extra else []),
                      format_report(ran, ("item", "paper", "ours", "runs", "status")), "",
                      f"The {pending} items not run at the paper profile yet, and the device, commit and spread of "
                      "every run, are on the book's *Reproduction report* page "
                      "(`python -m snnl.experiments.report --table`).", "", README_END])


def update_readme(path, items: list[dict], extra: list[dict] = ()) -> bool:
    """Rewrite the block of :func:`readme_block` in the file ``path``; True if it changed."""
    path = Path(path)
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0:
        raise ValueError(f"{path} has no {README_START} line to put the report under")
    stop = end + len(README_END) if end > start else start + len(README_START)
    new = text[:start] + readme_block(items, extra) + text[stop:]
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="folder of the committed records")
    p.add_argument("--table", action="store_true", help="print the whole table, not only the headline")
    p.add_argument("--readme", metavar="PATH", help="also rewrite the summary block of this README")
    a = p.parse_args(argv)
    if not Path(a.results).is_dir():
        print(f"{p.prog}: error: no folder {a.results} (--results: the folder of the committed records)",
              file=sys.stderr)
        return 2
    items = reproduction_report(a.results)
    print(headline(items))
    if a.table:
        print(format_report(with_status_text(paper_items(items))))
        print("\nSelf-checks and variants (not paper items, not counted):")
        print(format_report(with_status_text(self_checks(items)), ("item", "kind", "ours", "status", "criterion")))
        extra = additions(a.results)
        print(f"\n{study_headline(extra)}\n\nAdditions to the paper (not paper items):")
        print(format_report(extra, ("item", "ours", "runs", "verdict")))
    if a.readme:
        updated = update_readme(a.readme, items, additions(a.results))
        print(f"{a.readme}: " + ("updated" if updated else "already up to date"))
    return 0
