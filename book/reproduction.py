# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Reproduction report
#
# Every number and every claim of the paper, next to what our paper-profile runs measured.
# This page reads the **committed** results records under `results/` (written by runs at the
# paper profile: the paper's settings and real data), whatever profile the book itself was
# built at; the other chapters show the small-profile runs made while building the book.
# Each row of the ledger below is one paper item, the paper's number or claim beside ours,
# and ends in a status: {glue:text}`headline`

# %% tags=["parameters", "hide-input"]
profile = "small"  # the book's profile; this page always reports the committed paper-profile records
seed = 0  # unused: this page trains nothing
device = "auto"  # unused: this page trains nothing
records_dir = "results"  # the committed paper-profile records (what this page reports)
results_dir = "_build/results"  # records of this build (unused here)

# %% tags=["hide-input"]
from IPython.display import HTML, Markdown, display
from markdown_it import MarkdownIt
from myst_nb import glue

import snnl
from snnl.experiments.report import ledger as rp

records = rp.paper_records(records_dir)
banner = snnl.Banner("records", [r for rs in records.values() for r in rs], None)  # the records' data
items = rp.reproduction_report(records_dir)
latest = max((r["started_at"] for rs in records.values() for r in rs), default=None)
summary = rp.format_summary(items)
glue("headline", rp.headline(items), display=False)
glue("n_records", sum(len(rs) for rs in records.values()), display=False)
glue("newest", latest[:10] if latest else "none yet", display=False)
glue("tolerance", rp.TABLE1_TOLERANCE, display=False)
findings = rp.findings(items, records_dir)  # the landing page's findings, one sentence each
glue("finding_table1", findings["table1"], display=False)
glue("finding_ood", findings["ood"], display=False)
glue("finding_holds", findings["holds"], display=False)
# the summary as HTML too, for the landing page (a page can paste HTML, not Markdown, from another page)
glue("summary_html", HTML('<div class="snnl-summary">' + MarkdownIt("commonmark").enable("table").render(summary)
                          .replace("<table>", '<table class="table">') + "</div>"), display=False)

# %% [markdown]
# ## At a glance
#
# How many paper items have each status, per section of the paper. Behind them:
# {glue:text}`n_records` paper-profile records under `results/`, the newest from {glue:text}`newest`.

# %% tags=["hide-input"]
display(Markdown(summary))

# %% [markdown]
# ## The ledger: the paper next to our runs
#
# In the order of the paper, one table per section, each linking the chapter that runs it; each
# item links its own section there.
# The status of a row says how it compares:
#
# * **matches** / **does not match**: a number the paper prints (Table 1). One rule per kind of
#   number, stated in the row's criterion: a *mean* over our runs matches when the paper's value
#   lies inside our 95% confidence interval (Student's t over the seeds); a *best* value, or a
#   single run (no interval), when it lies within {glue:text}`tolerance` percentage points of
#   the paper's (less than the gains the paper reports).
# * **holds** / **does not hold**: a claim the paper draws, judged by a number the companion
#   adds (each row's criterion is in the section *Criteria and provenance* below), and only
#   when the 95% interval of that number excludes "no difference": over seeds where there are
#   seeds, else over the test points, batches or measurements of the run (Wilson, Newcombe,
#   Zou, Hanley-McNeil or bootstrap intervals, named in the criterion). The interval is shown in
#   the row.
# * **inconclusive**: the 95% interval contains "no difference", or the run has no interval.
# * **not run**: no record at the paper profile yet. Such rows stay in the table.
#
# Where a run used less than the paper's settings (fewer steps, a smaller attack budget, a
# substitute dataset), the status says so in brackets, and so does a record made from code with
# uncommitted changes (its commit ends in `-dirty`). Every comparison reads *entangled vs
# baseline* (or names both sides). "Runs" is the number of records behind our value (for Table 1
# with the paper's number of runs), "spread" their range or standard deviation. Where a paper
# dataset could not be used here, the *dataset* column names the dataset that was used and what
# it stands in for (e.g. Fashion-MNIST at 32x32x3 for CIFAR-10). Table 2's values were measured
# by the paper at a temperature that is illegible in our copy, so only the direction of each
# difference is compared, on the entanglement as Eq. 2 defines it (the minimum over $T$).
# %% tags=["hide-input"]
display(Markdown(rp.format_ledger(items)))

# %% [markdown]
# ## Self-checks and variants
#
# Not paper items, and not counted above: checks of the companion's own code (that the search
# of Eq. 2 finds the minimum of the loss over $T$) and our variants of a paper item (e.g. the
# SNNL generator with a non-saturating loss instead of the paper's objective), each labelled.

# %% tags=["hide-input"]
display(Markdown(rp.format_checks(items)))

# %% [markdown]
# ## Additions to the paper
#
# Not paper items, and not counted above: what this companion adds to settle a verdict. The
# Table 1 recipe study (Section 4 chapter) runs the authors' released recipe and one change of
# ours at a time, each entangled variant against its baseline on the same seeds (95% CIs and
# p-values; "helps" or "hurts" only when the CI of the difference excludes 0); the OOD benchmark
# (*Beyond the paper* chapter) scores Deep k-NN against the field's detectors.

# %% tags=["hide-input"]
extra = rp.additions(records_dir)
print(rp.study_headline(extra))
display(Markdown(rp.format_report(extra, ("item", "ours", "runs", "verdict"))))

# %% [markdown]
# ## Criteria and provenance
#
# How each status was decided, and where each number comes from: the device of the run and
# the commit of the code that ran (`-dirty`: with uncommitted changes at the time). The code
# behind this page is `snnl.experiments.report.ledger` (`python -m snnl.experiments.report --table`
# prints the same rows).

# %% tags=["hide-input"]
display(Markdown(rp.format_ledger(items, columns=("item", "status", "criterion", "device", "commit", "note"))))

# %% [markdown]
# ## Regenerating the records
#
# All records at once: `make reproduce` executes every chapter at the paper profile (meant for
# a GPU; the chapters also run on a CPU, much more slowly) and writes its records under
# `results/`; commit them and rebuild the book. Single experiments, from the repository root:

# %% tags=["hide-input"]
code = lambda cmd, rest: f"`{cmd}`" + (f" ({rest}" if rest else "")  # command, then the remark
todo = [e for e in dict.fromkeys(i["experiment"] for i in items) if e in rp.REGENERATE]
display(Markdown(rp.format_report(
    [{"records": e, "made by": code(*rp.REGENERATE[e].partition(" (")[::2]), "have": len(records.get(e, []))}
     for e in todo], columns=("records", "made by", "have"), right=("have",))))

# %% [markdown]
# Checkpoints of long runs go to `runs/` (not committed) so that a killed run resumes; the
# calibration and out-of-distribution experiments reuse the Table 1 models from there. A
# record holds its configuration, the device, the torch version, the git commit and the wall
# time of the run (see the README's *Results records*).

# %% tags=["remove-input"]
banner.finish()  # the wall time, in the banner at the top
