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
#
# Each row is one paper item and ends in a status:
#
# * **matches** / **does not match**: a number the paper prints (Table 1), ours within
#   0.25 percentage points of it or not (less than the gains the paper reports);
# * **qualitative claim holds** / **does not hold**: a claim the paper only draws in a figure,
#   judged by a number the companion adds (the criterion of every row is in the second table,
#   e.g. the Pearson correlation between Deep k-NN credibility and accuracy across attack
#   strengths, the AUROC of credibility for out-of-distribution inputs);
# * **not run at the paper profile**: no record yet. Such rows stay in the table.
#
# Where a paper dataset could not be used here, the *data* column names the dataset that was
# used and what it stands in for (e.g. Fashion-MNIST at 32x32x3 for CIFAR-10). Table 2's
# numbers were measured by the paper at a temperature that is illegible in our copy, so only
# the direction of each difference is compared. The code behind this page is
# `snnl.experiments.report` (`python -m snnl.experiments.report --table` prints the same table).

# %% tags=["parameters", "hide-input"]
profile = "small"  # the book's profile; this page always reports the committed paper-profile records
seed = 0  # unused: this page trains nothing
device = "auto"  # unused: this page trains nothing
records_dir = "results"  # the committed paper-profile records (what this page reports)
results_dir = "_build/results"  # records of this build (unused here)

# %%
from collections import Counter

from IPython.display import Markdown, display

import snnl
from snnl.experiments import report as rp

records = rp.paper_records(records_dir)
banner = snnl.Banner("records", [r for rs in records.values() for r in rs], None)  # the records' data
items = rp.reproduction_report(records_dir)
latest = max((r["started_at"] for rs in records.values() for r in rs), default=None)
n_records = sum(len(rs) for rs in records.values())
print(rp.headline(items))
print(f"{n_records} paper-profile record(s) under {records_dir!r}" + (f", the newest from {latest[:10]}" if latest else ""))

# %% [markdown]
# ## In numbers

# %%
display(Markdown(rp.format_report([{"status": s, "items": n} for s, n in rp.counts(items).items()],
                                  columns=("status", "items"))))
by_section = Counter((i["section"], i["status"] == rp.NOT_RUN) for i in items)
sections = list(dict.fromkeys(i["section"] for i in items))
display(Markdown(rp.format_report(
    [{"paper item": s, "with records": by_section[(s, False)], "not run yet": by_section[(s, True)]} for s in sections],
    columns=("paper item", "with records", "not run yet"))))

# %% [markdown]
# ## The paper next to our runs
#
# In the order of the paper: Section 2 (synthetic points), Section 3 (entanglement during
# training and in GANs), Section 4 (Table 1, Figs. 7, 8), Section 5 and the appendices
# (calibration, transferability, gradients, out-of-distribution inputs, Table 2). "Runs" is the
# number of records behind our value (for Table 1 with the paper's number of runs), "spread"
# their range or standard deviation.

# %%
display(Markdown(rp.format_report(items, columns=("item", "paper", "ours", "runs", "spread", "dataset", "status"))))

# %% [markdown]
# ## Criteria and provenance
#
# How each status was decided, and where each number comes from: the device of the run and
# the commit of the code that ran (`-dirty`: with uncommitted changes at the time).

# %%
display(Markdown(rp.format_report(items, columns=("item", "criterion", "device", "commit", "note"))))

# %% [markdown]
# ## Regenerating the records
#
# All records at once: `make reproduce` executes every chapter at the paper profile (meant for
# a GPU; the chapters also run on a CPU, much more slowly) and writes its records under
# `results/`; commit them and rebuild the book. Single experiments, from the repository root:

# %%
code = lambda cmd, rest: f"`{cmd}`" + (f" ({rest}" if rest else "")  # command, then the remark
todo = [e for e in dict.fromkeys(i["experiment"] for i in items) if e in rp.REGENERATE]
display(Markdown(rp.format_report(
    [{"records": e, "made by": code(*rp.REGENERATE[e].partition(" (")[::2]), "have": len(records.get(e, []))}
     for e in todo], columns=("records", "made by", "have"))))

# %% [markdown]
# Checkpoints of long runs go to `runs/` (not committed) so that a killed run resumes; the
# calibration and out-of-distribution experiments reuse the Table 1 models from there. A
# record holds its configuration, the device, the torch version, the git commit and the wall
# time of the run (see the README's *Results records*).

# %% tags=["remove-input"]
banner.finish()  # the wall time, in the banner at the top
