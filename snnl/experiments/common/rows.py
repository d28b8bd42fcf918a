"""The reproduction report's vocabulary (:mod:`snnl.experiments.report.ledger`): the statuses, how each
record is regenerated, and the helpers every item's ``report_items(records)`` builds its rows
with (:func:`report_item`, :func:`per_dataset`, :func:`verdict`...). The rows of each paper item
are written next to the code that writes its records (``report_items`` in its module)."""

from __future__ import annotations

import html
import math

from snnl.banner import data_label
from snnl.stats import interval_verdict

MATCHES, NO_MATCH = "matches", "does not match"
HOLDS, FAILS = "qualitative claim holds", "qualitative claim does not hold"
# a comparison whose 95% interval contains "no difference" (or that has no interval at all): neither
# "holds" nor "does not hold", which both need an interval that excludes it
INCONCLUSIVE = "inconclusive"
NOT_RUN, ERROR = "not run at the paper profile", "could not be evaluated"
STATUSES = (MATCHES, NO_MATCH, HOLDS, FAILS, INCONCLUSIVE, NOT_RUN, ERROR)
# what a row is: a paper item (counted in the headline); a check of the companion's own code (e.g.
# that Eq. 2's search finds the minimum); our variant of a paper item (labelled, judged apart)
PAPER_ITEM, SELF_CHECK, VARIANT = "paper item", "self-check", "variant"
# How each record is (re)generated at the paper profile, from the repository root: a command, then
# a remark in brackets.
BOOK = "make reproduce (runs book/{} at the paper profile)"
REGENERATE = {
    "table1": "python -m snnl train --dataset mnist --alpha 10 --steps 14000 --batch-size 256 --lr 1e-4 "
              "--profile paper --experiment table1 --out results/paper/table1 (per dataset, alpha 0 and 10, seed)",
    "table2": "python -m snnl.experiments.ood --profile paper --parts table2 --out results/paper/geometry",
    "ood": "python -m snnl.experiments.ood --profile paper --parts ood --out results/paper/geometry",
    "adversarial_gradients": "python -m snnl.experiments.ood --profile paper --parts gradients "
                             "--out results/paper/geometry",
    "hidden_adversarial": "python -m snnl.experiments.ood --profile paper --parts hidden --out results/paper/geometry",
    "dknn_calibration": "python -m snnl.experiments.adversarial --profile paper --dataset mnist "
                        "--out results/paper/calibration (also --dataset fashion-mnist)",
    "dknn_calibration_triplet": "python -m snnl.experiments.adversarial --profile paper --dataset mnist "
                                "--regularizer triplet --attacks fgsm,bim --no-transfer --out results/paper/calibration",
    "gan_entanglement": "python -m snnl.experiments.generative --profile paper --out results/paper/gan",
    "snnl_gan": "python -m snnl.experiments.generative --profile paper --only snnl_gan --out results/paper/gan",
    "snnl_gan_learned": "python -m snnl.experiments.generative --profile paper --only snnl_gan_learned "
                        "--out results/paper/gan",
    "fig15": "python -m snnl.experiments.discriminative --figure 15 --profile paper --out results/paper/fig15",
    "fig3_16": "python -m snnl.experiments.discriminative --figure 3 --profile paper --out results/paper/fig3_16",
    "fig7": BOOK.format("regularization.py"),
    "fig7_search": "python -m snnl sweep fig7 --profile paper --workers 2 (64 trials; any number of machines "
                   "with --storage on one database)", "fig8": BOOK.format("regularization.py"),
    **{e: BOOK.format("loss.py") for e in ("figure1", "figure13", "figure2", "temperature_curve")},
}
REGENERATE["transferability"] = REGENERATE["dknn_calibration"]


def short_commit(c) -> str:
    c = str(c or "unknown")
    return c if c == "unknown" else c[:7] + ("-dirty" if c.endswith("-dirty") else "")


def report_item(section, item, paper, experiment, recs=(), **kw) -> dict:
    """One row; provenance (runs, data, device, commits) from ``recs``; ``kw`` sets the rest."""
    recs = list(recs)
    row = {"section": section, "item": item, "paper": paper, "ours": "–", "runs": len(recs), "spread": "–",
           "dataset": ", ".join(dict.fromkeys(data_label(r) for r in recs)) or "–",
           "device": ", ".join(sorted({str(r.get("device")) for r in recs})) or "–",
           "commit": ", ".join(sorted({short_commit(r.get("git_commit")) for r in recs})) or "–",
           "status": NOT_RUN, "criterion": "", "note": "", "experiment": experiment,
           "regenerate": REGENERATE.get(experiment, ""), "kind": PAPER_ITEM, "reduced": "",
           "uncommitted": ", ".join(dirty_commits(recs))}
    row.update(kw)
    return row


def verdict(ok) -> str:
    """The status of a qualitative claim: holds when ``ok``, else does not hold. Only for a
    criterion that needs no interval (a self-check); a comparison goes through :func:`judged`."""
    return HOLDS if ok else FAILS


def judged(ci, higher: bool = True) -> str:
    """The status of a claimed difference from its 95% interval (``snnl.stats.interval_verdict``):
    holds when the interval lies on the claimed side of 0, does not hold when on the other side,
    inconclusive when it contains 0 or there is none."""
    return {"holds": HOLDS, "does not hold": FAILS}.get(interval_verdict(ci, higher), INCONCLUSIVE)


def against(ci, threshold: float, above: bool = True) -> str:
    """The status of "the measure lies above (or, not ``above``, below) ``threshold``" from the
    measure's 95% interval: holds when the interval lies on that side (its lower end at or above the
    threshold, or its upper end below it), does not hold when it lies on the other side,
    inconclusive when it straddles the threshold or there is none."""
    if ci is None:
        return INCONCLUSIVE
    lo, hi = ci
    if lo >= threshold:
        return HOLDS if above else FAILS
    return (FAILS if above else HOLDS) if hi < threshold else INCONCLUSIVE


def all_hold(statuses: list[str]) -> str:
    """A claim made of parts: holds when every part holds, does not hold when one does not, else
    inconclusive."""
    if statuses and all(s == HOLDS for s in statuses):
        return HOLDS
    return FAILS if FAILS in statuses else INCONCLUSIVE


def fmt_ci(ci, fmt=".3f") -> str:
    """``"95% CI [lo, hi]"``, or ``"no interval"`` without one."""
    return "no interval" if ci is None else f"95% CI [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def dirty_commits(recs) -> list[str]:
    """The short commits of ``recs`` made on an uncommitted tree (``-dirty``)."""
    return sorted({short_commit(r.get("git_commit")) for r in recs if str(r.get("git_commit", "")).endswith("-dirty")})


def fmt_num(v, fmt=".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def better(a, b) -> bool:
    """a > b, where None / NaN never wins."""
    ok = lambda v: v is not None and not (isinstance(v, float) and math.isnan(v))
    return ok(a) and (not ok(b) or a > b)


def by_key(recs, key) -> dict:
    """The newest record per ``key(record)``."""
    return {key(r): r for r in recs}


def stands_for(r) -> str:
    """The paper dataset a record stands for: its substitute's original, else its dataset."""
    return (r.get("config") or {}).get("substitute_for") or r["dataset"]


def per_dataset(section, name, paper, experiment, recs, wanted, key, judge, criterion, reduced_of=None, **kw):
    """``judge(record) -> (ours, status, note)`` (``status``: a status, or a bool for
    :func:`verdict`); ``wanted``: the paper's datasets (keys), listed even without a record;
    records of other datasets follow. ``reduced_of(record)``: the settings it reduced from the
    paper's (shown in the status cell). ``kw``: more fields of every row (``kind``...)."""
    found = by_key(recs, key)
    items = []
    for ds in list(wanted) + [k for k in found if k not in wanted]:
        rec = found.get(ds)
        title = f"{name} ({ds})"
        if rec is None:
            items.append(report_item(section, title, paper, experiment, criterion=criterion, **kw))
            continue
        ours, ok, note = judge(rec)
        status = verdict(ok) if isinstance(ok, bool) else ok
        reduced = reduced_of(rec) if reduced_of else ""
        items.append(report_item(section, title, paper, experiment, [rec], ours=ours, status=status, note=note,
                                 criterion=criterion, reduced=reduced, **kw))
    return items


# ---- status badges, and a chapter's rows at a glance ---------------------------------------------
# the word a status shows as, and its kind (the badge's colour: snnl-status-<kind> in the book's CSS)
STATUS_BADGES = {MATCHES: ("matches", "ok"), HOLDS: ("holds", "ok"), NO_MATCH: ("does not match", "fail"),
                 FAILS: ("does not hold", "fail"), INCONCLUSIVE: ("inconclusive", "unsure"),
                 NOT_RUN: ("not run", "pending"), ERROR: ("not evaluated", "error")}


def status_badge(status: str) -> str:
    """``status`` as an inline HTML badge for a Markdown table: its short word (read by screen
    readers and search), a class for its colour, the full status as a tooltip."""
    word, kind = STATUS_BADGES.get(status, (status, "error"))
    return f'<span class="snnl-status snnl-status-{kind}" title="{html.escape(status)}">{html.escape(word)}</span>'


def status_text(item: dict, status: str | None = None) -> str:
    """The status cell: the status (or ``status``, e.g. its badge), then in brackets the settings
    reduced from the paper's, and the commits whose tree was uncommitted when the run was made."""
    extra = [x for x in (item.get("reduced"), item.get("uncommitted") and
                         f"code uncommitted at run time: {item['uncommitted']}") if x]
    return (status or item["status"]) + (f" ({'; '.join(extra)})" if extra else "")


def at_a_glance(items: list[dict]) -> str:
    """A chapter's rows of the report as a Markdown table (the paper's claim, ours, the status as a
    badge with its reduced settings), for the top of its page; variants and self-checks included,
    labelled as such."""
    def name(i):
        return i["item"] + ("" if i.get("kind", PAPER_ITEM) == PAPER_ITEM else f" *({i['kind']})*")

    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ") if v not in (None, "") else "–"
    lines = ["| item | paper | ours | status |", "|---|---|---|---|"]
    rows = [f"| {cell(name(i))} | {cell(i['paper'])} | {cell(i['ours'])} | {status_text(i, status_badge(i['status']))} |"
            for i in items]
    return "\n".join(lines + rows)
