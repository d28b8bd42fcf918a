# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Entanglement of real and synthetic data (Section 3.2, Appendices D and I)
#
# A GAN's generator is trained against a discriminator whose task is to tell real from
# synthetic data, so synthetic data *should* become entangled with real data. The paper
# measures this with the soft nearest neighbor loss on a batch of equal parts real and
# generated images labelled "real" / "synthetic", in pixel space, and claims.

# %% [markdown]
# **At a glance:** the paper's claims in this chapter next to our paper-profile runs (the
# committed records, judged as on the [reproduction report](reproduction.ipynb)).

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from snnl.experiments.common.records import paper_records
from snnl.experiments.common.rows import at_a_glance
from snnl.experiments.generative import gans as item

recs = paper_records("results")
display(Markdown(at_a_glance(item.report_items(recs))))

# %% [markdown]
# The paper's claims:
#
# * **Figs. 4, 5, 17 (App. D):** during GAN training the entanglement of real and synthetic
#   data *rises*, in step with their growing overlap in a t-SNE picture (CIFAR-10; MNIST in
#   App. D, "qualitatively identical").
# * **Fig. 6:** a generator trained *only* to maximise the loss between real and generated
#   batches in pixel space (no discriminator) makes "realistic and varied" MNIST digits,
#   "which include all classes", smoother than a GAN's.
# * **Fig. 23 (App. I):** a discriminator with a 10-d output that *minimises* the loss of
#   real vs synthetic in that learned space, against a generator that maximises it, also
#   learns MNIST (a proof of concept).
#
# We measure the entanglement as Eq. 2 (the minimum over $T$, `snnl.entanglement`) of 2 x
# `measure_size` flattened images, with a fixed real batch and fixed noise. As $T \to 0$ the
# loss only looks at nearest neighbours, so we also print the leave-one-out 1-nearest-
# neighbour two-sample accuracy (1 = every image's nearest neighbour is of its own kind;
# 0.5 = fully mixed): while it is 1, the entanglement is 0. The paper only *describes*
# Fig. 6's digits; we count them: a CNN trained on the real digits classifies the samples
# and `class_coverage` is the number of classes with at least 1% of them.

# %% tags=["parameters", "hide-input"]
profile = "small"  # "small" (embedded digits, CPU, about a minute) or "paper" (MNIST, thousands of steps)
seed = 0  # random seed
device = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
steps = 0  # training steps of every model; 0 for the defaults of the profile (gen.PROFILES)
results_dir = "_build/results"  # records of this run go here ("results" at paper profile)
paper_results = "results/paper/gan"  # committed paper-profile records, shown first

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

import snnl
from snnl.experiments.generative import gans as gen

snnl.seed_everything(seed)
p = gen.get_profile(profile)
paper = {e: snnl.load_records(paper_results, e, profile="paper") for e in gen.EXPERIMENTS}
reuse = profile == "paper" and all(paper.values())  # the paper profile shows the committed runs
banner = snnl.Banner(profile, [p.dataset], None if reuse else device)


def trend(records):  # each generator's entanglement, start -> end (max), for a caption
    return "; ".join(f"{gen.label(r)}: {r['metrics']['entanglement_start']:.3f} → {r['metrics']['entanglement_end']:.3f} "
                     f"(max {r['metrics']['entanglement_max']:.3f})" for r in records)


def most_entangled(records):  # the generator most entangled with the real data at the end, for a caption
    r = max(records, key=lambda r: r["metrics"]["entanglement_end"])
    return f"{gen.label(r)} ({r['metrics']['entanglement_end']:.3f})"

# %% [markdown]
# ## The paper-profile records
#
# Records committed under `results/paper/gan/` by
# `python -m snnl.experiments.generative --profile paper --out results/paper/gan` (MNIST,
# CPU; the steps are in each record's config).

# %% tags=["hide-input"]
recs = [r for e in gen.EXPERIMENTS for r in paper[e]]
if recs:
    display(Markdown(gen.table_generators(recs)))
else:
    print(f"no paper-profile records under {paper_results}")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-paper", "caption": "{glue:text}`fig-generative-paper`"}}
if recs and not reuse:
    gen.plot_entanglement(recs, title="paper profile (MNIST), committed records")
    plt.show()
    glue("fig-generative-paper", f"The committed paper-profile records (MNIST): entanglement with the real images (left) "
         f"and 1-NN two-sample accuracy (right) of every generator over training; the most entangled at the end: "
         f"{most_entangled(recs)}.", display=False)
# the numbers of the next paragraph, from these records ("nan" / "n/a" without them)
nan = float("nan")
glue("paper_start_entanglement", max((r["metrics"]["entanglement_start"] for r in recs), default=nan), display=False)
glue("paper_start_nn", min((r["metrics"]["nn_accuracy_start"] for r in recs), default=nan), display=False)
glue("paper_gan_peak_step", max((max(zip(r["history"]["entanglement"], r["history"]["measure_step"]))[1]
                                 for r in paper["gan_entanglement"]), default="n/a"), display=False)
plain = [r for r in paper["snnl_gan"] if r["config"]["g_loss"] == "maximize"]  # the paper's -l_sn
glue("paper_collapse_entanglement", plain[-1]["metrics"]["entanglement_end"] if plain else nan, display=False)

# %% [markdown]
# **What we find** (paper profile, MNIST). Every generator starts fully separable from the
# real data (entanglement {glue:text}`paper_start_entanglement:.2f`, 1-NN accuracy
# {glue:text}`paper_start_nn:.2f`) and ends entangled with it, so in that weak
# sense the claim holds. The path is not a steady rise: both GANs jump to their highest
# entanglement within the first {glue:text}`paper_gan_peak_step` steps, while their samples are still blurry averages
# lying *between* real digits, and fall as the samples sharpen. The DCGAN's entanglement then
# rises steadily over the rest of training (the behaviour of the paper's Fig. 17); the fully
# connected GAN's stays low while it drops whole classes (its class histogram). The minimum
# over $T$ is attained near the nearest-neighbour distances, so the measure behaves like a
# soft 1-nearest-neighbour two-sample test, and the two curves mostly mirror each other. The
# generator trained on the soft nearest neighbor loss alone becomes the *most* entangled with
# the real data and covers all ten classes, but only in the non-saturating form: with the
# paper's $-\ell_{sn}$ it collapses onto the mean digit, which the entanglement
# ({glue:text}`paper_collapse_entanglement:.3f`; its maximum is $\log 2 \approx 0.693$) rates as
# perfectly entangled. Its digits are grainier than the
# GANs', not smoother as in the paper, and moving two of its 64 noise dimensions changes a
# sample only a little. The learned-space SNNL-GAN (App. I) learns MNIST digits, with an
# entanglement that rises throughout training. The small profile, on the 8x8 digits
# scaled up and a few hundred steps, only shows the start of these curves: it is *This run*
# in each section below.

# %% [markdown]
# (generative-fig4-5-17)=
# ## Figures 4, 5 and 17: entanglement during GAN training
#
# Two GANs with the non-saturating loss and Adam ($2\cdot10^{-4}$, $\beta_1 = 0.5$): `fc`
# (fully connected generator and discriminator) and `dcgan` (transposed convolutions with
# batch norm / strided convolutions). Generators end in a sigmoid (images are in [0, 1]).
#
# ### This run

# %% tags=["hide-input"]
if reuse:
    print("showing the committed paper-profile records")
else:
    data = snnl.load_dataset(p.dataset)
    clf = gen.coverage_classifier(profile, seed, device, data, progress=False)
    common = dict(profile=profile, seed=seed, device=device, steps=steps or None, data=data, classifier=clf,
                  out_dir=f"{results_dir}/gan", progress=False)
    print(f"coverage classifier (Table 1's CNN): test accuracy {clf.metrics['test_accuracy']:.3f}")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-gans", "caption": "{glue:text}`fig-generative-gans`"}}
if reuse:
    gans = paper["gan_entanglement"]
else:
    gans = [gen.gan_entanglement(v, **common).record for v, _ in p.gan_steps]
gen.plot_entanglement(gans, title=f"{gans[0]['dataset']}: real vs synthetic")
plt.show()
rising = sum(r["metrics"]["entanglement_end"] > r["metrics"]["entanglement_start"] for r in gans)
glue("fig-generative-gans", f"This run ({gans[0]['dataset']}, {gans[0]['profile']} profile), the paper's Figs. 5 "
     f"and 17: the entanglement of real and synthetic images (Eq. 2, pixels; left) ends above its start for {rising} "
     f"of {len(gans)} GANs (the paper: it rises during training): {trend(gans)}. Right: the 1-NN two-sample accuracy (0.5 = mixed).",
     display=False)

# %% tags=["hide-input"]
display(Markdown(gen.table_generators(gans)))

# %% [markdown]
# The t-SNE panels (Fig. 4) embed the real and generated images of each snapshot together;
# titles give the entanglement at that step.

# %% tags=["hide-input"]
# the captions of the t-SNE and the samples of each GAN (two: fc and dcgan)
tsne = [f"This run ({r['dataset']}, {r['profile']} profile), the paper's Fig. 4 for the {gen.label(r)}: t-SNE of "
        f"real (grey) and synthetic (red) images at each snapshot, titled with the entanglement at that step; the 1-NN two-sample accuracy goes "
        f"{r['metrics']['nn_accuracy_start']:.2f} → {r['metrics']['nn_accuracy_end']:.2f} (1: separable, 0.5: mixed)."
        for r in gans] + ["", ""]
samples = [f"This run: samples of the {gen.label(r)} at the same snapshots; at the end they cover "
           f"{r['metrics'].get('class_coverage', 'n/a')} of 10 classes (at least 1% of the samples each)."
           for r in gans] + ["", ""]
glue("fig-generative-tsne-0", tsne[0], display=False)
glue("fig-generative-samples-0", samples[0], display=False)
glue("fig-generative-tsne-1", tsne[1], display=False)
glue("fig-generative-samples-1", samples[1], display=False)

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-tsne-0", "caption": "{glue:text}`fig-generative-tsne-0`"}}
gen.plot_tsne(gans[0])
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-samples-0", "caption": "{glue:text}`fig-generative-samples-0`"}}
gen.plot_snapshots(gans[0])
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-tsne-1", "caption": "{glue:text}`fig-generative-tsne-1`"}}
if len(gans) > 1:
    gen.plot_tsne(gans[1])
    plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-samples-1", "caption": "{glue:text}`fig-generative-samples-1`"}}
if len(gans) > 1:
    gen.plot_snapshots(gans[1])
    plt.show()

# %% [markdown]
# (generative-fig6)=
# ## Figure 6: the soft nearest neighbor loss as the generator's only objective
#
# No discriminator: the generator (`dcgan`) is trained to make a batch of real and generated
# images, labelled real / synthetic, entangled in pixel space, at a fixed temperature below
# the typical squared distance between an image and its nearest real neighbour (digits: 5,
# MNIST: 8). With $P_i(\text{other})$ the probability that Eq. 1's sampling picks for point
# $i$ a neighbour of the other kind, $\ell_{sn} = -\frac{1}{b}\sum_i \log(1 - P_i(\text{other}))$.
# The paper's generator minimises $-\ell_{sn}$; ours minimises the *non-saturating* form
# $-\frac{1}{b}\sum_i \log P_i(\text{other})$ (`snnl.gan.log_other_class_probability`),
# which pushes the same way. Why: on MNIST the plain $-\ell_{sn}$ makes every sample the
# mean digit (the paper-profile records next hold such a run). The mean image is nearer to a
# real image than most other real images of a batch of 64 are, and 64 copies of it outweigh
# the one nearest real neighbour, so the real images' terms grow most when all samples
# collapse onto it. In the non-saturating form a sample whose neighbours are all samples
# costs without bound, so collapse no longer pays.
#
# ### The paper-profile records
#
# The plain $-\ell_{sn}$ of the paper beside our non-saturating form, from the committed records.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-forms", "caption": "{glue:text}`fig-generative-forms`"}}
forms = {r["config"]["g_loss"]: r for r in paper["snnl_gan"]}
if len(forms) == 2:
    gen.plot_samples([r for _, r in sorted(forms.items())])
    plt.show()
    plain, ours = forms.get("maximize"), next(r for k, r in forms.items() if k != "maximize")
    glue("fig-generative-forms", f"The committed paper-profile records ({ours['dataset']}): the generator trained with "
         f"the paper's −ℓsn covers {plain['metrics'].get('class_coverage', 'n/a') if plain else 'n/a'} of 10 classes, ours with "
         f"the non-saturating form {ours['metrics'].get('class_coverage', 'n/a')} of 10 (class coverage of the samples "
         "in each title).", display=False)

# %% [markdown]
# ### This run
#
# Left: samples of fixed noise; right: Fig. 6's grid, one noise vector with two of its dimensions
# swept over $[-3, 3]$ (rows, columns), the others fixed.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-fig6", "caption": "{glue:text}`fig-generative-fig6`"}}
snnl_rec = paper["snnl_gan"][-1] if reuse else gen.snnl_gan(**common).record
gen.plot_snnl_generator(snnl_rec)
plt.show()
print(gen.describe(snnl_rec))
m6 = snnl_rec["metrics"]
glue("fig-generative-fig6", f"This run ({snnl_rec['dataset']}, {snnl_rec['profile']} profile), the paper's Fig. 6 "
     f"with our non-saturating objective: samples of fixed noise (left) and one noise vector with two of its dimensions "
     f"swept over [-3, 3] (right). The samples cover {m6.get('class_coverage', 'n/a')} of 10 classes (the paper: all "
     f"classes); entanglement with the real images {m6['entanglement_start']:.3f} → {m6['entanglement_end']:.3f}.",
     display=False)

# %% [markdown]
# The class histogram of the samples, next to the GANs' (same classifier, same number of
# samples). A class counts as covered from 1% of the samples on; noisy samples are also
# given a class, so coverage means something only together with the grids and the mean
# confidence.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-classes", "caption": "{glue:text}`fig-generative-classes`"}}
gen.plot_class_histograms([snnl_rec, *gans])
plt.show()
covered = [r for r in [snnl_rec, *gans] if "class_coverage" in r["metrics"]]
glue("fig-generative-classes", "This run: the share of each generator's samples per predicted class (dashed: the 1% "
     "threshold of a covered class). Classes covered: " + "; ".join(f"{gen.label(r)} {r['metrics']['class_coverage']}/10"
                                                           for r in covered) + ".", display=False)

# %% [markdown]
# (generative-fig23)=
# ## Figure 23 (Appendix I): the loss in a learned 10-d space
#
# The discriminator (`dcgan`'s, with a 10-d output) minimises $\ell_{sn}$ of real vs synthetic
# in its output space; the generator maximises it. Two choices of ours, where the paper gives
# none: the cosine distance at $T = 0.5$ (with the Euclidean distance the discriminator
# scales its outputs up until the loss and every gradient vanish), and again the
# non-saturating generator loss: once the discriminator separates the two sets,
# $-\ell_{sn}$ has vanishing gradients (the same reason the standard GAN's generator uses
# $-\log D(G(z))$). On the digits, with the plain $-\ell_{sn}$ the generator did not learn.
#
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-fig23", "caption": "{glue:text}`fig-generative-fig23`"}}
learned = paper["snnl_gan_learned"][-1] if reuse else gen.snnl_gan_learned(**common).record
gen.plot_snapshots(learned, size=2.6)
plt.show()
print(gen.describe(learned))
m23 = learned["metrics"]
glue("fig-generative-fig23", f"This run ({learned['dataset']}, {learned['profile']} profile), the paper's Fig. 23: "
     f"samples of the learned-space SNNL-GAN over training; at the end they cover {m23.get('class_coverage', 'n/a')} "
     f"of 10 classes, entanglement with the real images {m23['entanglement_start']:.3f} → {m23['entanglement_end']:.3f}.",
     display=False)

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-generative-all", "caption": "{glue:text}`fig-generative-all`"}}
gen.plot_entanglement([*gans, snnl_rec, learned], title="all four generators")
plt.show()
glue("fig-generative-all", f"This run: entanglement with the real images (left) and 1-NN two-sample accuracy (right) of "
     f"its four generators; the most entangled at the end: {most_entangled([*gans, snnl_rec, learned])}.",
     display=False)

# %% tags=["remove-input"]
banner.finish([*gans, snnl_rec, learned])  # the data actually used and the wall time, in the banner at the top
