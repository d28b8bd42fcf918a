# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The soft nearest neighbor loss (Section 2)
#
# This chapter will reproduce Section 2 of the paper. For now it shows the data
# the small profile runs on: the class balance of the embedded digits.

# %% tags=["parameters"]
profile = "small"  # "small" (CPU, seconds) or "paper" (the paper's settings, GPU)
seed = 0  # random seed
device = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
dataset = "digits"  # a name in snnl.DATASETS; "digits" needs no download
results_dir = "_build/results"  # records of this run go here ("results" at paper profile)

# %%
import matplotlib.pyplot as plt

import snnl

snnl.seed_everything(seed)
ds = snnl.load_dataset(dataset)
ds

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(ds.y_train.numpy(), bins=range(ds.num_classes + 1), rwidth=0.8, align="left")
ax.set(xlabel="class", ylabel="training images", title=f"{ds.name}: {len(ds.y_train)} training images")
ax.set_xticks(range(ds.num_classes), ds.classes)
plt.show()
