# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Adversarial gradients, out-of-distribution data and adversarial training (Appendices E, G, H; Figs. 10-12)
#
# Section 5 of the paper asks how entangled models (trained to minimise cross-entropy and
# *maximise* the soft nearest neighbor loss, Eq. 3) treat inputs that do not come from the
# training distribution. It makes four claims, each shown with a picture; next to every
# picture this chapter puts a number a reader can check.

# %% [markdown]
# **At a glance:** the paper's claims in this chapter next to our paper-profile runs (the
# committed records, judged as on the [reproduction report](reproduction.ipynb)).

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from snnl.experiments.common.records import paper_records
from snnl.experiments.common.rows import at_a_glance
from snnl.experiments.ood import gradients, hidden, outliers, robustness

recs = paper_records("results")
display(Markdown(at_a_glance(gradients.report_items(recs) + outliers.report_items(recs) + hidden.report_items(recs) + robustness.report_items(recs))))

# %% [markdown]
# 1. **Figs. 10, 11 (Section 5.2).** The gradients that a targeted FGSM attack follows form
#    class clusters that are *aligned across two cross-entropy models* (a reason adversarial
#    examples transfer); for two entangled models the clusters are no longer coherent.
# 2. **Figs. 12, 21 (Section 5.3, Appendix G).** In the logits of an entangled model,
#    out-of-distribution test data (notMNIST letters for an MNIST model) sit apart from the
#    in-distribution data; a cross-entropy model maps them onto its classes.
# 3. **Fig. 22 (Appendix H).** In the first hidden layer of an entangled Fashion-MNIST model,
#    adversarial inputs are projected away from real ones, which is why the Deep k-NN gives
#    them low credibility.
# 4. **Table 2 (Appendix E).** A model adversarially trained with PGD (Madry et al.) has *more*
#    entangled convolutional layers than a cross-entropy model: entanglement does not conflict
#    with robustness.
#
# The small profile runs on the embedded 8x8 digits (upsampled to 28x28) with short training,
# and uses pixel-shuffled digits as out-of-distribution data. The paper profile uses MNIST,
# notMNIST and Fashion-MNIST and reuses the models of Table 1 (14,000 steps). Each section shows
# first the committed paper-profile records, then this build's run (*This run*, at the small
# profile). All code lives in
# `snnl.experiments.ood.geometry` and `snnl.experiments.ood.robustness`.

# %% tags=["parameters", "hide-input"]
profile = "small"  # "small" (CPU, a few minutes) or "paper" (MNIST / notMNIST / Fashion-MNIST)
seed = 0  # seed of data subsets, attacks and t-SNE
device = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
results_dir = "_build/results"  # records of this run go here ("results" at paper profile)
paper_results = "results/paper/geometry"  # committed paper-profile records shown next to ours
wait = 0.0  # paper profile: seconds to wait for Table 1 checkpoints still being trained

# %% tags=["hide-input"]
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from snnl import Banner, load_records
from snnl.experiments.ood.geometry import (config_for, plot_gradients, plot_hidden, plot_ood, run_adversarial_gradients,
                                       run_hidden_adversarial, run_ood, table_gradients, table_hidden, table_ood)
from snnl.experiments.ood.robustness import run_table2, table_table2

cfg = config_for(profile, seed=seed, device=device, wait=wait)
banner = Banner(profile, [], device)
out_dir = Path(results_dir) / profile / "geometry"
cache = {}  # models shared by the sections below


def paper_record(experiment):  # the latest committed paper-profile record, or None
    recs = load_records(paper_results, experiment, profile="paper")
    return recs[-1] if recs else None


def which(rec, committed=False):  # whose run a figure shows: the start of its caption
    return (f"The committed paper-profile record ({rec['dataset']})" if committed
            else f"This run ({rec['dataset']}, {rec['profile']} profile)")


def caption_gradients(rec, committed=False):
    m = {k: v["cross_model_knn_accuracy"] for k, v in rec["metrics"].items()}
    return (f"{which(rec, committed)}, the paper's Figs. 10 and 11: t-SNE of the signs of two models' "
            f"targeted-FGSM gradients, one panel per pair of models (colour: model). How well one model's class clusters predict the other's "
            f"(cross-model kNN accuracy; 1/9, about 0.11, is chance): " + ", ".join(f"{k} {v:.3f}" for k, v in m.items())
            + ". The paper: aligned for two cross-entropy models, not for two entangled models.")


def caption_ood(rec, committed=False):
    m = rec["metrics"]
    better, worse = sorted(m, key=lambda k: -m[k]["auroc_credibility"])[:2]
    gap = m[better]["auroc_credibility"] - m[worse]["auroc_credibility"]
    return (f"{which(rec, committed)}, the paper's Figs. 12 and 21: t-SNE of the logits of in-distribution and "
            f"out-of-distribution test inputs. Deep k-NN credibility tells them apart with an AUROC of "
            + ", ".join(f"{k} {v['auroc_credibility']:.3f}" for k, v in m.items())
            + f": the {better} model's is higher by {gap:.3f} (the paper: the entangled model sets them apart).")


def caption_hidden(rec, committed=False):
    m = rec["metrics"]
    better, worse = sorted(m, key=lambda k: -m[k]["knn_accuracy_layer"])[:2]
    gap = m[better]["knn_accuracy_layer"] - m[worse]["knn_accuracy_layer"]
    return (f"{which(rec, committed)}, the paper's Fig. 22: t-SNE of the first hidden layer on real and FGSM "
            f"inputs. A 10-NN classifier tells real from adversarial points in that layer with an accuracy of "
            + ", ".join(f"{k} {v['knn_accuracy_layer']:.3f}" for k, v in m.items())
            + f" (0.5 is chance): the {better} model's is higher by {gap:.3f} (the paper: the entangled model projects "
            "them apart).")

# %% [markdown]
# (ood-fig10-11)=
# ## Figs. 10, 11: the gradients of a targeted attack
#
# For test inputs of every class but the target (class 1, as in the paper), we take the
# gradient that a targeted FGSM step follows, $-\nabla_x \mathrm{CE}(f(x), 1)$, on two models
# trained from different seeds, and embed the signs of both models' gradients together with
# t-SNE (the authors' code t-SNEs the sign). Colour = model. Numbers: the mean cosine between
# the two models' gradients of the same input (raw and sign), and how well a kNN classifier
# fitted on one model's points in the joint embedding predicts the *class of the input* of the
# other model's points (`cross_model_knn_accuracy`: high when the two models' class clusters
# line up). The third pair mixes a cross-entropy and an entangled model.
#
# ### The paper-profile records

# %% tags=["hide-input"]
rec = paper_record("adversarial_gradients")
if rec:
    display(Markdown(f"Committed under `{paper_results}/` ({rec['dataset']}, {rec['config']['n_points']} inputs, "
                     f"device {rec['device']}):"))
    display(Markdown(table_gradients(rec)))
else:
    print(f"No paper-profile record of Figs. 10, 11 under {paper_results!r} yet.")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-gradients-paper", "caption": "{glue:text}`fig-ood-gradients-paper`"}}
if rec:
    plot_gradients(rec)
    plt.show()
    glue("fig-ood-gradients-paper", caption_gradients(rec, committed=True), display=False)

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-gradients", "caption": "{glue:text}`fig-ood-gradients`"}}
grads = run_adversarial_gradients(cfg, out_dir, cache)
plot_gradients(grads["record"])
plt.show()
glue("fig-ood-gradients", caption_gradients(grads["record"]), display=False)

# %% tags=["hide-input"]
display(Markdown(table_gradients(grads["record"])))

# %% [markdown]
# (ood-fig12-21)=
# ## Figs. 12, 21: out-of-distribution test inputs
#
# t-SNE of the logits of in-distribution test points and out-of-distribution points, for the
# cross-entropy model and the entangled model. The number: the AUROC of telling
# in-distribution inputs (positive) from out-of-distribution ones by Deep k-NN credibility
# (all hidden layers and the logits, k = 75, calibrated on held-out test points), with the
# AUROC of the softmax maximum as the usual reference (0.5 = no separation, 1 = perfect).
#
# ### The paper-profile records

# %% tags=["hide-input"]
rec = paper_record("ood")
if rec:
    display(Markdown(f"Committed under `{paper_results}/` ({rec['dataset']}, device {rec['device']}):"))
    display(Markdown(table_ood(rec)))
else:
    print(f"No paper-profile record of Figs. 12, 21 under {paper_results!r} yet.")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-ood-paper", "caption": "{glue:text}`fig-ood-ood-paper`"}}
if rec:
    plot_ood(rec)
    plt.show()
    glue("fig-ood-ood-paper", caption_ood(rec, committed=True), display=False)

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-ood", "caption": "{glue:text}`fig-ood-ood`"}}
ood = run_ood(cfg, out_dir, cache)
plot_ood(ood["record"])
plt.show()
glue("fig-ood-ood", caption_ood(ood["record"]), display=False)

# %% tags=["hide-input"]
display(Markdown(table_ood(ood["record"])))

# %% [markdown]
# (ood-fig22)=
# ## Fig. 22: the first hidden layer on real and adversarial inputs
#
# t-SNE of the first hidden layer (`conv1`, after pooling) on real test points and their
# adversarial versions (FGSM, $\epsilon$ = 0.1). The number: the accuracy of a 10-nearest-
# neighbour classifier telling real from adversarial points in that layer (5-fold, a point and
# its adversarial twin always in the same fold), and in the 2-D embedding.
#
# ### The paper-profile records

# %% tags=["hide-input"]
rec = paper_record("hidden_adversarial")
if rec:
    display(Markdown(f"Committed under `{paper_results}/` ({rec['dataset']}, device {rec['device']}):"))
    display(Markdown(table_hidden(rec)))
else:
    print(f"No paper-profile record of Fig. 22 under {paper_results!r} yet.")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-hidden-paper", "caption": "{glue:text}`fig-ood-hidden-paper`"}}
if rec:
    plot_hidden(rec)
    plt.show()
    glue("fig-ood-hidden-paper", caption_hidden(rec, committed=True), display=False)

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-ood-hidden", "caption": "{glue:text}`fig-ood-hidden`"}}
hidden = run_hidden_adversarial(cfg, out_dir, cache)
plot_hidden(hidden["record"])
plt.show()
glue("fig-ood-hidden", caption_hidden(hidden["record"]), display=False)

# %% tags=["hide-input"]
display(Markdown(table_hidden(hidden["record"])))

# %% [markdown]
# (ood-table2)=
# ## Table 2: entanglement of an adversarially trained model
#
# The PGD model minimises cross-entropy on PGD examples only (Madry et al.: $\epsilon$ = 0.3,
# 40 steps of 0.01, random start); the baseline is the same CNN trained on clean data. We
# measure every layer on batches of 128 test points. The paper says its values were "measured
# at temperature" and the value of $T$ is not legible in our copy, so we give both the
# entanglement (the minimum over $T$, Eq. 2) and the loss at $T$ = 100 (the authors' initial
# temperature). Layers: the paper's model has one hidden fully connected layer, ours two; its
# "Fully Connected layer" is our `fc1`, and `fc2` has no counterpart. The scale of the
# adversarial training is in the record's config (on a CPU it is far below Madry et al.'s).
# Read the two kinds of column differently: at a fixed $T$ the loss also reflects the overall
# scale of a layer's activations (the same class structure at smaller distances looks more
# entangled), while the minimum over $T$ does not depend on scale; the minimising $T$ is shown too.
#
# ### The paper-profile records

# %% tags=["hide-input"]
rec = paper_record("table2")
if rec:
    display(Markdown(f"Committed under `{paper_results}/` ({rec['dataset']}, device {rec['device']}); adversarial "
                     f"training: {rec['config']['adversarial_training']}"))
    display(Markdown(table_table2(rec)))
else:
    print(f"No paper-profile record of Table 2 under {paper_results!r} yet.")

# %% [markdown]
# ### This run

# %% tags=["hide-input"]
t2 = run_table2(cfg, out_dir, cache)
display(Markdown(f"{t2['record']['dataset']}, {t2['record']['profile']} profile; adversarial training: "
                 f"{t2['record']['config']['adversarial_training']}"))
display(Markdown(table_table2(t2["record"])))

# %% tags=["remove-input"]
banner.finish([r["record"] for r in (grads, ood, hidden, t2)])  # the data actually used and the wall time
