# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The soft nearest neighbor loss (Section 2, Appendices A and B)
#
# Section 2 of the paper introduces the soft nearest neighbor loss, a measure of how entangled the
# classes of a labelled batch are, and shows what minimising and maximising it does to points in
# the plane (Figs. 1, 2, 13); this chapter runs those experiments and checks each picture with a
# number of its own.

# %% [markdown]
# **At a glance:** the paper's claims in this chapter next to our paper-profile runs (the
# committed records, judged as on the [reproduction report](reproduction.ipynb)).

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from snnl.experiments.common.records import paper_records
from snnl.experiments.common.rows import at_a_glance
from snnl.experiments.loss import synthetic as item

recs = paper_records("results")
display(Markdown(at_a_glance(item.report_items(recs))))

# %% [markdown]
# For a batch of $b$ points $x_i$ with labels $y_i$ and a temperature $T$, the paper's Eq. 1 is
#
# $$\ell_{sn}(x, y, T) = -\frac{1}{b}\sum_{i=1}^{b} \log
#   \frac{\sum_{j\neq i,\, y_j = y_i} e^{-\|x_i - x_j\|^2/T}}{\sum_{k\neq i} e^{-\|x_i - x_k\|^2/T}}$$
#
# the negative log-probability that a neighbour sampled with probability $\propto e^{-d/T}$
# has the same label. Low means classes are separated, high means they are *entangled*.
# Eq. 2 removes the temperature: the entanglement is $\min_T \ell_{sn}(x, y, T)$.

# %% [markdown]
# `snnl.soft_nearest_neighbor_loss` computes Eq. 1 in log space (finite even at huge
# distances), `snnl.entanglement` Eq. 2 by a search over $\log T$. Everything below runs
# gradient descent on the coordinates of 2-D points, as in the paper; it runs on the CPU in
# seconds at every profile.

# %% tags=["parameters", "hide-input"]
profile = "small"  # "small" (CPU, seconds) or "paper" (more steps, MNIST pixels for Eq. 2)
seed = 0  # random seed
device = "auto"  # unused here: these 2-D problems always run on the CPU
dataset = "digits"  # real images for the temperature curve (paper profile: "mnist")
records_dir = "results"  # committed paper-profile records, shown first in each section
results_dir = "_build/results"  # records of this run go here ("results" at paper profile)

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

import snnl
from snnl.experiments.common.records import paper_records
from snnl.experiments.loss import synthetic
from snnl.plots import plot_figure1, plot_figure2, plot_figure13, plot_temperature_curve

snnl.seed_everything(seed)
steps = 300 if profile == "small" else 1000  # gradient steps on the coordinates
n_images = 500 if profile == "small" else 2000  # images for the temperature curve
common = dict(seed=seed, out_dir=results_dir, profile=profile)
banner = snnl.Banner(profile, ["synthetic", dataset], device="cpu")
committed = paper_records(records_dir)  # experiment -> the committed paper-profile records
this_run = f"This run ({profile} profile)"


def show_committed(experiment):  # the table of the newest committed record of a figure, or a line saying so
    recs = committed.get(experiment)
    if not recs:
        print(f"No paper-profile record of {experiment} under {records_dir!r} yet.")
        return
    rec = recs[-1]
    display(Markdown(f"The committed record: {rec['config']['steps']} gradient steps, the loss at "
                     f"T = {rec['config']['temperature']:g}."))
    display(Markdown(synthetic.table_points(rec)))


def where(c):  # where a curve has its minimum over T, for a caption
    if not c["at_boundary"]:
        return f"at T = {c['argmin']:.3g}"
    return "at the largest T" if c["argmin"] >= max(c["temperature"]) * 0.999 else "at the smallest T"

# %% [markdown]
# (loss-fig1)=
# ## Figure 1: minimising the loss isolates the classes
#
# **Paper:** 200 points are sampled from a 2-D Gaussian and labelled at random with 4
# classes; gradient descent on their coordinates minimises the soft nearest neighbor loss
# and "the 4 classes become more isolated". The paper shows the picture only; we add the loss
# and the *1-NN purity* (the share of points whose nearest other point has their label;
# 0.25 is chance for 4 balanced classes).
#
# ### The paper-profile records

# %% tags=["hide-input"]
show_committed("figure1")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-loss-fig1", "caption": "{glue:text}`fig-loss-fig1`"}}
fig1 = synthetic.figure1(steps=steps, **common)
plot_figure1(fig1)
plt.show()
i, f = fig1["metrics"]["initial"], fig1["metrics"]["final"]
glue("fig-loss-fig1", f"{this_run}, the paper's Fig. 1: minimising the loss {'isolates' if f['purity'] > i['purity'] else 'does not isolate'} "
     f"the 4 random classes of 200 points. Left: the start, 1-NN purity {i['purity']:.2f} (0.25 is chance); middle: "
     f"after {steps} gradient steps, 1-NN purity {f['purity']:.2f}; right: the loss, {i['loss']:.3f} → {f['loss']:.3f}.",
     display=False)

# %% tags=["hide-input"]
display(Markdown(synthetic.table_points(fig1["record"])))  # loss at the figure's T = 0.5

# %% [markdown]
# Minimising does not gather each class into a single blob: the classes break into several
# small pure clusters. The loss only asks that each point's *near* neighbours share its
# label, which is what Appendix A shows on purpose.
#
# (loss-fig13)=
# ## Figure 13 (Appendix A): two modes per class are kept
#
# **Paper:** each class is sampled from two Gaussians; minimising the loss "does not
# collapse" a class into one point, "both initial modes are preserved". Here every one of
# 4 sites on a circle holds modes of two classes (entangled), and a class's two modes sit
# at different sites. Number we add: per class, a 2-means split of its points compared with
# the true modes (adjusted Rand index; 1 = the two modes are two separate groups).
#
# ### The paper-profile records

# %% tags=["hide-input"]
show_committed("figure13")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-loss-fig13", "caption": "{glue:text}`fig-loss-fig13`"}}
fig13 = synthetic.figure13(steps=steps, **common)
plot_figure13(fig13)
plt.show()
i, f = fig13["metrics"]["initial"], fig13["metrics"]["final"]
glue("fig-loss-fig13", f"{this_run}, the paper's Fig. 13: each class is drawn from two modes (marker: mode); after "
     f"minimising (right) the two modes of a class {'are still two separate groups' if f['mode_ari'] >= 0.9 else 'are no longer two groups'} "
     f"(2-means split against the true modes, adjusted Rand index {i['mode_ari']:.2f} at the start, "
     f"{f['mode_ari']:.2f} at the end; 1 = two separate groups).", display=False)

# %% tags=["hide-input"]
display(Markdown(synthetic.table_points(fig13["record"])))  # mode_gap: distance of a class's two modes / RMS radius

# %% [markdown]
# (loss-fig2)=
# ## Figure 2 (Appendix B): triplet loss vs soft nearest neighbor loss
#
# **Paper:** from the same random start (4 classes), both losses are minimised and
# maximised. Minimised, "both losses have similar effects: the classes are separated".
# Maximised, "the triplet loss chooses a representation that densely projects the data
# around a circle whereas the soft nearest neighbor loss spreads out data throughout the
# representation space". The triplet loss (Eq. 4) samples one positive and one negative per
# anchor at every step. Number we add: the *radial CV*, the coefficient of variation of the
# distances to the centroid: 0 on a circle, about 0.52 for a 2-D Gaussian, 0.35 for a
# uniform disc. The plots zoom on 95% of the points.
#
# ### The paper-profile records

# %% tags=["hide-input"]
show_committed("figure2")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-loss-fig2", "caption": "{glue:text}`fig-loss-fig2`"}}
fig2 = synthetic.figure2(steps=steps, **common)
plot_figure2(fig2)
plt.show()
m2 = fig2["metrics"]
low = min(m2[f"{loss}_min"]["purity"] for loss in ("snnl", "triplet"))
cv_t, cv_s = m2["triplet_max"]["radial_cv"], m2["snnl_max"]["radial_cv"]
glue("fig-loss-fig2", f"{this_run}, the paper's Fig. 2, triplet loss (top) and soft nearest neighbor loss (bottom) "
     f"from the same start (middle). Minimised (left), both {'separate' if low >= 0.9 else 'do not both separate'} the classes (the lower "
     f"1-NN purity of the two: {low:.2f}). Maximised (right), the triplet loss {'does not put' if cv_t > 0.1 else 'puts'} the points on "
     f"a circle as in the paper (radial CV {cv_t:.2f}; 0 on a circle, 0.35 for a uniform disc), and the soft nearest "
     f"neighbor loss leaves them at a radial CV of {cv_s:.2f}.", display=False)

# %% tags=["hide-input"]
display(Markdown(synthetic.table_points(fig2["record"])))  # objective: each run's own loss, start and end
glue("fig2_min_purity", low, display=False)

# %% [markdown]
# What we see, with plain gradient steps of a fixed size: minimising either loss separates
# the classes (1-NN purity {glue:text}`fig2_min_purity:.2f` or more), as the paper says. Minimising the triplet loss leaves four tight
# clusters at about the same distance from the centre (a low radial CV). Maximising has no
# end point: both losses grow without bound under plain gradient ascent (at a fixed $T$ a
# point gains by pushing its own class ever farther away), so the picture depends on how long
# one runs. Our maximised configurations are therefore not the paper's circle and evenly
# spread cloud; the printed CVs say how far from a circle each one is.
#
# (loss-eq2)=
# ## Eq. 2: the loss as a function of the temperature
#
# **Paper:** the temperature changes the loss a lot; at low $T$ only the nearest neighbours
# matter, at high $T$ far points count too. The entanglement is the minimum over $T$,
# approximated in training by gradient steps on $1/T$. Below: the loss over a log grid of
# $T$ for the points of Fig. 1 before and after minimising, and for raw pixels of real
# images; circles mark `snnl.entanglement` (open when the minimum is at the range's edge).
#
# ### The paper-profile records

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-loss-eq2-paper", "caption": "{glue:text}`fig-loss-eq2-paper`"}}
def curve_of(rec):  # a committed temperature curve, as synthetic.temperature_curve returns it
    m = rec["metrics"]
    return {"temperature": rec["history"]["temperature"], "loss": rec["history"]["loss"], "argmin": m["temperature"],
            **{k: m[k] for k in ("entanglement", "at_boundary", "median_distance")}}


kept = {r["config"]["data"]: r for r in committed.get("temperature_curve", [])}  # the newest per set of points
paper_names = {"figure1-start": "Fig. 1 start (random labels)", "figure1-end": "Fig. 1 minimised"}
kept = dict(sorted(kept.items(), key=lambda kv: list(paper_names).index(kv[0]) if kv[0] in paper_names else 2))
paper_curves = {paper_names.get(k, f"{k}: {r['config']['points']} images, pixels"): curve_of(r) for k, r in kept.items()}
if paper_curves:
    plot_temperature_curve(*paper_curves.values(), names=list(paper_curves))
    plt.show()
    glue("fig-loss-eq2-paper", "The committed paper-profile records, Eq. 2: the loss against the temperature T, and its "
         "minimum over T (circles; open: at the edge of the range). " + "; ".join(
             f"{n}: {c['entanglement']:.3f} {where(c)}" for n, c in paper_curves.items()) + ".", display=False)
else:
    print(f"No paper-profile temperature curves under {records_dir!r} yet.")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-loss-eq2", "caption": "{glue:text}`fig-loss-eq2`"}}
ds = snnl.load_dataset(dataset, n_train=n_images, seed=seed)
curves = [
    synthetic.temperature_curve(fig1["initial"], fig1["labels"], **common, name="figure1-start"),
    synthetic.temperature_curve(fig1["final"], fig1["labels"], **common, name="figure1-end"),
    synthetic.temperature_curve(ds.x_train.flatten(1).numpy(), ds.y_train.numpy(), **common, name=dataset),
]
names = ["Fig. 1 start (random labels)", "Fig. 1 minimised", f"{dataset}: {n_images} images, pixels"]
plot_temperature_curve(*curves, names=names)
plt.show()
glue("fig-loss-eq2", f"{this_run}, Eq. 2: the loss against the temperature T, and its minimum over T, the "
     "entanglement (circles; open: at the edge of the range). " + "; ".join(f"{n}: {c['entanglement']:.3f} {where(c)}" for n, c in zip(names, curves))
     + ".", display=False)
for name, c in zip(names, curves):
    edge = " (edge of the range)" if c["at_boundary"] else ""
    print(f"{name}: entanglement {c['entanglement']:.3f} at T = {c['argmin']:.3g}{edge}, "
          f"{c['argmin'] / c['median_distance']:.2g} x the median squared distance")

# %% [markdown]
# Random labels are most "separated" when every point sees all others alike: the
# minimum over $T$ lies at the largest temperature, where the loss tends to
# $\log\frac{b-1}{b/4-1} \approx 1.39$. Once the classes are isolated the minimum moves to
# the smallest temperature, where the loss tends to 0 because every nearest neighbour
# shares the label. Real images sit in between: the minimum lies at a finite temperature,
# well below the typical squared distance, where mostly the nearest neighbours count.

# %% tags=["remove-input"]
banner.finish()  # the wall time, in the banner at the top
