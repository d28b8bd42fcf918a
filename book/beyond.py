# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Beyond the paper: out-of-distribution and adversarial detection on the field's metrics
#
# *An addition to the paper, not one of its items.* Section 5.3 argues that entangled hidden
# layers make outliers easier to recognise, because an outlier has "fewer than the normal number
# of neighbours from the predicted class"; the paper shows t-SNE pictures and Deep k-NN
# calibration plots. A reader from the out-of-distribution (OOD) detection field judges such a
# claim on the metrics and baselines of their own benchmarks (pytorch-ood, OpenOOD).

# %% [markdown]
# **At a glance:** per pair of in- and out-of-distribution data, does entangling raise Deep k-NN's
# AUROC (the committed records: the authors' recipe, four seeds per model; paired 95% interval)?

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from snnl import load_records
from snnl.experiments.beyond import benchmark
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE, status_badge

glance = [r for r in load_records("results", benchmark.EXPERIMENT) if r["profile"] == "paper"]
if glance:
    word = {"yes": HOLDS, "no, it hurts": FAILS}
    display(Markdown("| pair | DkNN AUROC, entangled - baseline | p | entangling raises it |\n|---|---:|---:|---|\n" + "\n".join(
        f"| {v['item'].replace('OOD benchmark ', '')} | {v['dknn_auroc_diff']:+.3f} | {v['p']:.2g} | "
        f"{status_badge(word.get(v['entangling_helps_dknn'], INCONCLUSIVE))} |"
        for v in benchmark.report_items(glance) if v.get("dknn_auroc_diff") is not None)))
    display(Markdown(benchmark.overall_line(glance)))
else:
    print("No paper-profile records of the OOD benchmark yet.")

# %% [markdown]
# This chapter scores the cross-entropy (baseline) and the entangled model of each seed with seven
# detectors:
#
# * `dknn`: Deep k-NN credibility (all hidden layers and the logits, k = 75, calibrated on held-out
#   in-distribution test points), as in the OOD chapter;
# * `paper_knn`: the paper's own measure, the fraction of a point's k = 75 neighbours in each hidden
#   layer that carry the model's predicted class, averaged over the hidden layers;
# * from `pytorch-ood`: `msp` (maximum softmax probability), `energy`, `mahalanobis` (last hidden
#   layer), `odin` (T = 1000, input step 0.0014) and `knn` (Sun et al. 2022: distance to the 50th
#   nearest normalised last-hidden-layer feature).
#
# Every detector is fitted on the same training points. Metrics (fractions): AUROC, AUPR-IN,
# AUPR-OUT, and FPR@95TPR, the fraction of OOD inputs accepted when 95% of the in-distribution
# inputs are (lower is better). Outlier sets: a second dataset (MNIST → notMNIST, MNIST →
# Fashion-MNIST, Fashion-MNIST → MNIST; SVHN → CIFAR-10 for users with that data) and successful
# FGSM and BIM examples at two $\epsilon$, made from correctly classified test points used
# nowhere else.
#
# **Models.** The paper profile uses the authors' released recipe (the cleverhans model-zoo CNN,
# 6 epochs, $\alpha$ = 0 vs $\alpha$ = 10 at a fixed T = 100), trained by the Table 1 study, not
# the 14,000-step Table 1 CNN of the other chapters; each record names its model. The small
# profile trains the same architecture for 150 steps on the embedded digits, with pixel-shuffled
# digits and uniform noise as *substitutes* for a second dataset. Code:
# `snnl.experiments.beyond.benchmark` and `snnl.experiments.beyond.detectors`.

# %% tags=["parameters", "hide-input"]
profile = "small"  # "small" (digits, models trained here, CPU minutes) or "paper" (needs models)
models = None  # paper profile: folder of the Table 1 study's checkpoints <variant>_paper_s<seed>
seed = 0  # seed of the data splits and subsets
device = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
results_dir = "_build/results"  # records of this run go here
paper_results = "results/paper/ood_benchmark"  # committed paper-profile records shown below

# %% tags=["hide-input"]
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from snnl import Banner, load_records
from snnl.experiments.common import markdown_table
from snnl.experiments.beyond.benchmark import (config_for, display_rows, overall_line, plot_ood_benchmark,
                                            run_ood_benchmark, verdict_lines)

cfg = config_for(profile, seed=seed, device=device, **({"models": models} if models else {}))
banner = Banner(profile, list(cfg.datasets), device)


def show(recs):  # the table, then one verdict per pair
    display(Markdown(markdown_table(display_rows(recs))))
    display(Markdown("\n\n".join([overall_line(recs)] + verdict_lines(recs))))


def caption(recs, which):  # the heat maps' caption: what they show, and the verdict over all pairs
    return (f"{which}: the AUROC of each detector (rows) on each pair (columns), mean over seeds, for the baseline (top) "
            f"and the entangled model (middle), and the entangled model's change (bottom; blue: better). "
            + overall_line(recs).replace("**", ""))

# %% [markdown]
# ## The paper-profile records
#
# The table gives, per pair and detector, the AUROC (higher is better) and the FPR@95TPR (lower is
# better) of both models, mean ± standard deviation over the seeds. The heat maps show the AUROC
# of every detector (rows) on every pair (columns) for both models, and the entangled model's
# change (blue: better). Each verdict below the table is computed from the records: whether
# entangling raises DkNN's AUROC (the paired 95% interval of the difference over seeds excludes
# 0), and where DkNN ranks among the seven detectors.

# %% tags=["hide-input"]
paper = load_records(paper_results, "ood_benchmark", profile="paper")
if paper:
    src = {r["config"]["model_source"]["name"] for r in paper}
    seeds = {d: sorted({r["seed"] for r in paper if r["dataset"] == d}) for d in sorted({r["dataset"] for r in paper})}
    display(Markdown(f"{len(paper)} records; models {', '.join(sorted(src))} "
                     f"({paper[0]['config']['model_source']['recipe']}, {paper[0]['config']['model_source']['steps']} "
                     f"steps); model seeds " + "; ".join(f"{d}: {', '.join(map(str, v))}" for d, v in seeds.items())
                     + f"; device {paper[0]['device']}."))
else:
    display(Markdown("No paper-profile records yet."))

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-beyond-paper", "caption": "{glue:text}`fig-beyond-paper`"}}
if paper:
    plot_ood_benchmark(paper)
    plt.show()
    glue("fig-beyond-paper", caption(paper, "The committed paper-profile records"), display=False)

# %% tags=["hide-input"]
if paper:
    show(paper)

# %% [markdown]
# ## Verdict
#
# From the committed paper-profile records (the lines above are computed from them; four model
# seeds per pair). **Does entangling help DkNN?** Sometimes. DkNN's AUROC rises, with a paired 95%
# interval above zero, on five of the eleven pairs: a second dataset in both directions between
# MNIST and Fashion-MNIST, and FGSM examples (MNIST at $\epsilon$ = 0.3, Fashion-MNIST at both
# $\epsilon$). It falls on one (Fashion-MNIST, BIM at $\epsilon$ = 0.1) and shows no significant
# change on the rest, notMNIST and the other BIM sets among them. Each interval is for one pair;
# the line "All 11 pairs" also counts the pairs that stay significant after a Benjamini-Hochberg
# correction over the eleven tests. So the paper's mechanism, fewer neighbours of the predicted
# class, shows for some kinds of outlier and not others. The entangled models are the authors'
# recipe, which also lowers test accuracy (the Table 1 study in the Section 4 chapter).
#
# **Is DkNN competitive with the field's detectors?** No. On the same models it ranks fourth of
# seven at the median. Another detector scores a higher AUROC on every pair and model but one (BIM
# at $\epsilon$ = 0.3, baseline MNIST model). The better detectors are most often those that need
# no neighbour search at all (energy, ODIN or MSP on the logits, Mahalanobis on the last hidden
# layer), or Sun et al.'s KNN on the last hidden layer alone. A reader who wants outliers detected
# should start with those; entangling the hidden layers is not needed for it.

# %% [markdown]
# ## This run
#
# The same benchmark, run by this build at its profile (at the small profile: models trained here
# for 150 steps on the embedded digits, with pixel-shuffled digits and uniform noise standing in for
# a second dataset); the heat maps and the table read as those of the paper profile above.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-beyond-run", "caption": "{glue:text}`fig-beyond-run`"}}
records = run_ood_benchmark(cfg, Path(results_dir) / profile / "ood_benchmark", log=lambda *_: None)
plot_ood_benchmark(records)
plt.show()
glue("fig-beyond-run", caption(records, f"This run ({profile} profile)"), display=False)

# %% tags=["hide-input"]
show(records)

# %% tags=["remove-input"]
banner.finish(records)  # the data actually used and the wall time
