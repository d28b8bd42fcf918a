# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Entanglement during discriminative training (Section 3.1, Appendix C)
#
# The soft nearest neighbor loss is also a *measuring instrument*: computed on a layer's
# representation of a batch, it says how entangled the classes are in that layer. The paper
# follows it, layer by layer, through the training of classifiers optimised with cross-entropy
# only.

# %% [markdown]
# **At a glance:** the paper's claims in this chapter next to our paper-profile runs (the
# committed records, judged as on the [reproduction report](reproduction.ipynb)).

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from snnl.experiments.common.records import paper_records
from snnl.experiments.common.rows import at_a_glance
from snnl.experiments.discriminative import representations as item

recs = paper_records("results")
display(Markdown(at_a_glance(item.report_items(recs))))

# %% [markdown]
# The paper's claims:
#
# * **Fig. 15 (Appendix C):** a network with one convolutional and three fully connected
#   layers on MNIST; the loss of each training batch at each layer *decreases* during
#   training ("most likely because MNIST is easier to separate in the input domain").
# * **Fig. 16 (Appendix C):** a ResNet v2 on CIFAR-10 with the cosine distance; the
#   entanglement "remains high throughout learning for the lower blocks" and "only decreases
#   in the final block".
# * **Fig. 3 (Section 3.1):** the layers *inside* the last residual block: after an initial
#   drop the lower layers of the block become more entangled again, while the block's output
#   keeps disentangling.
#
# We report two measures per layer: the loss of each logged *training batch* at the learned
# temperature (the paper's Fig. 15 measure, recorded by `snnl.train`), and the
# *entanglement* (Eq. 2, the minimum over $T$, `snnl.entanglement`) of one fixed batch of test
# images at a few points of training. The second needs no temperature, which matters for the
# cosine distance: cosine distances are at most 2, so at a badly chosen $T$ every batch sits at
# the loss's ceiling. At the small profile the embedded scikit-learn digits stand in for MNIST
# and CIFAR-10; at the paper profile CIFAR-10, where it cannot be downloaded, is replaced by
# Fashion-MNIST padded to 32x32 with 3 channels. Every plot and printout names the data used.

# %% tags=["parameters", "hide-input"]
profile = "small"  # "small" (CPU, about a minute) or "paper" (MNIST / CIFAR-10 at the paper's settings, GPU)
seed = 0  # random seed
device = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
dataset = ""  # data of Fig. 15; empty means the profile default (small: digits, paper: mnist)
resnet_dataset = ""  # data of Figs. 3/16; empty means the profile default (small: digits 32x32x3, paper: cifar10)
steps = 0  # training steps of Fig. 15; 0 means the profile default (small: 300, paper: 14000)
resnet_steps = 0  # training steps of Figs. 3/16; 0 means the profile default (small: 150, paper: 106 epochs)
records_dir = "results"  # committed paper-profile records, shown first in each section
results_dir = "_build/results"  # records of this run go here ("results" at paper profile)

# %% tags=["hide-input"]
import matplotlib.pyplot as plt

from myst_nb import glue

import snnl
from snnl.experiments.common.records import paper_records
from snnl.experiments.discriminative import representations as rep

snnl.seed_everything(seed)
common = dict(profile=profile, seed=seed, device=device, progress=False, reuse=profile == "paper")
banner = snnl.Banner(profile, [dataset or ("digits" if profile == "small" else "mnist")], device)
committed = {e: rep.LayerEntanglement.from_record(v[-1])  # the newest committed record of each figure
             for e, v in paper_records(records_dir).items() if e in ("fig15", "fig3_16") and v}
this_run = f"This run ({profile} profile)"


def caption15(r, lead):  # Fig. 15's caption: whose run (lead) and what it shows
    fell = [n for n, (a, b) in r.change("batch").items() if b < a]
    return (f"{lead}, the paper's Fig. 15 ({r.data_label}, {r.config['steps']} steps of cross-entropy training): the "
            f"training-batch loss fell in {len(fell)} of {len(r.batch_snnl)} hidden layers of CNN1 (left; the paper: "
            f"in every layer). Right: the entanglement (Eq. 2) of a fixed batch of test images.")


def caption3_16(r, lead):  # Figs. 3 and 16's caption
    inner = [n for n in r.last_block if "." in n]
    rose = [n for n in inner if r.entanglement[n][-1] > min(r.entanglement[n]) + 0.01]  # up again after its lowest
    e, first, last = r.change(), r.blocks[0], r.blocks[-2]
    return (f"{lead}, the paper's Figs. 3 and 16 ({r.data_label}, {r.config['steps']} steps, cosine distance). Left "
            f"(Fig. 3): {len(rose)} of {len(inner)} layers inside the last block end above their lowest entanglement "
            f"(the paper: they rise again after an initial drop). Right (Fig. 16): the first block ({first}) went "
            f"{e[first][0]:.3f} → {e[first][1]:.3f}, the last block ({last}) {e[last][0]:.3f} → {e[last][1]:.3f} (the "
            f"paper: the lower blocks stay entangled, the last one disentangles).")

# %% [markdown]
# (discriminative-fig15)=
# ## Figure 15: a small network on MNIST, cross-entropy only
#
# `CNN1`: one 3x3 convolution with 32 filters (ReLU, 2x2 max-pooling), then fully connected
# layers of 256 and 128 units and the logits. The loss is recorded every few steps on the
# training batch at every hidden layer, with one learnable temperature per layer
# ($T = T_0/t$, $T_0 = 100$, one gradient step on $t$ per record).
#
# ### The paper-profile records

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-discriminative-fig15-paper", "caption": "{glue:text}`fig-discriminative-fig15-paper`"}}
if "fig15" in committed:
    rep.plot_figure15(committed["fig15"])
    plt.show()
    print(committed["fig15"].summary())
    glue("fig-discriminative-fig15-paper", caption15(committed["fig15"], "The committed paper-profile record"),
         display=False)
else:
    print(f"No paper-profile record of Fig. 15 under {records_dir!r} yet.")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-discriminative-fig15", "caption": "{glue:text}`fig-discriminative-fig15`"}}
fig15 = rep.layer_entanglement_over_training(
    "15", dataset=dataset or None, out_dir=f"{results_dir}/{profile}/fig15",
    **({"steps": steps} if steps else {}), **common)
rep.plot_figure15(fig15)
plt.show()
print(fig15.summary())
glue("fig-discriminative-fig15", caption15(fig15, this_run), display=False)

# %% tags=["hide-input"]
batch = fig15.change("batch")
fell = [n for n, (a, b) in batch.items() if b < a]
print(f"Measured ({profile} profile, {fig15.data_label}): "
      f"the training-batch loss fell in {len(fell)} of {len(batch)} hidden layers "
      f"({', '.join(f'{n} {a:.2f} -> {b:.2f}' for n, (a, b) in batch.items())}); "
      f"paper: it decreases in every layer.")

# %% [markdown]
# (discriminative-fig3-16)=
# ## Figures 16 and 3: a ResNet, per residual block and inside the last block
#
# `ResNetV2`: a pre-activation ResNet with a 3x3 stem and three stages of two basic blocks
# (16, 32 and 64 filters), 14 weighted layers (the paper's "ResNet v2 with 15 layers" is not
# further specified). Distances are cosine distances, as in the paper. Fig. 16 follows each
# block's output and the pooled features; Fig. 3 the two convolutions inside the last block
# and the block's output. The model runs in training mode for the measurements (batch
# statistics, on a copy of the model), so batch normalisation sees what it sees in training.
#
# ### The paper-profile records

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-discriminative-fig3-16-paper", "caption": "{glue:text}`fig-discriminative-fig3-16-paper`"}}
if "fig3_16" in committed:
    rep.plot_figure3_16(committed["fig3_16"])
    plt.show()
    print(committed["fig3_16"].summary())
    if committed["fig3_16"].substitute_for:
        print(f"Data: {committed['fig3_16'].data_note}.")
    glue("fig-discriminative-fig3-16-paper", caption3_16(committed["fig3_16"], "The committed paper-profile record"),
         display=False)
else:
    print(f"No paper-profile record of Figs. 3 and 16 under {records_dir!r} yet.")

# %% [markdown]
# ### This run

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-discriminative-fig3-16", "caption": "{glue:text}`fig-discriminative-fig3-16`"}}
fig3 = rep.layer_entanglement_over_training(
    "3", dataset=resnet_dataset or None, out_dir=f"{results_dir}/{profile}/fig3_16",
    **({"steps": resnet_steps} if resnet_steps else {}), **common)
rep.plot_figure3_16(fig3)
plt.show()
print(fig3.summary())
if fig3.substitute_for:
    print(f"Data: {fig3.data_note}.")
glue("fig-discriminative-fig3-16", caption3_16(fig3, this_run), display=False)

# %% tags=["hide-input"]
ent = fig3.change()
first, last = fig3.blocks[0], fig3.blocks[-2]  # the first block and the last block's output
print(f"Measured ({profile} profile, {fig3.data_label}, {fig3.config['steps']} steps): the entanglement "
      f"of {first} went {ent[first][0]:.3f} -> {ent[first][1]:.3f}, of the last block {last} "
      f"{ent[last][0]:.3f} -> {ent[last][1]:.3f}; paper (Fig. 16): the lower blocks stay entangled, the last block "
      f"disentangles. Inside the last block (Fig. 3): "
      + ", ".join(f"{n} {ent[n][0]:.3f} -> {ent[n][1]:.3f}" for n in fig3.last_block)
      + "; paper: the inner layers' entanglement rises again after an initial drop, the output's falls.")

# %% [markdown]
# **Reading the numbers.** The entanglement is a minimum over temperatures; when a layer's
# every test point has a same-class nearest neighbour the minimum is reached as $T \to 0$ and
# is 0. Lower values mean better separated classes. The small profile trains for a minute on
# 1,297 handwritten digits, which are already fairly separated in pixel space; the paper's
# second regime (inner layers becoming *more* entangled as training goes on) needs the long
# CIFAR-10 training of the paper profile (its records open each section). The records of this
# run are in `results_dir`; at the paper profile, records present under `results/paper/` are
# reused instead of training again.

# %% tags=["remove-input"]
banner.finish([fig15, fig3])  # the data actually used and the wall time, in the banner at the top
