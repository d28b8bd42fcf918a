"""Profiles, recipes and data stand-ins shared by the paper items.

* :func:`profile_values`, :func:`config_from_profile` -- a named profile's settings (``small``,
  ``paper``), and a config dataclass built from them and overrides: the one way every item's
  ``config_for`` / ``make_config`` / ``get_profile`` / ``table1_config`` picks its profile;
* :data:`PAPER_RECIPE` -- the paper's CNN training (Table 1: 14,000 steps of Adam, batch 256,
  learning rate 1e-4), written once and used by every item that trains that CNN;
  :data:`RESNET_PAPER` -- the ResNet of Table 1's footnote (Figs. 3, 16 and Table 1's CIFAR-10 row);
* :func:`load_or_substitute` -- a paper dataset, or its stand-in (:data:`SUBSTITUTES`) when it is
  missing.
"""

from __future__ import annotations

import warnings
from dataclasses import fields

from snnl.data import Dataset, DatasetError, load_dataset
from snnl.train import TrainConfig

# the paper's CNN training (Section 4, Table 1: Adam, batch 256, 14,000 steps, learning rate 1e-4), as
# snnl.train.TrainConfig's defaults hold it
PAPER_RECIPE = dict(steps=TrainConfig.steps, batch_size=TrainConfig.batch_size, lr=TrainConfig.lr)

# ResNet recipe of Table 1's footnote: "ResNet v2 with 15 layers trained for 106 epochs with an
# exponentially decreasing learning rate starting at 0.4" (SGD with momentum 0.9 assumed; the decay
# takes the learning rate to 1% of its start over the 106 CIFAR-10 epochs of 196 batches of 256).
# Cosine distances are at most 2: at the Euclidean default T0 = 100 the loss sits at its ceiling
# (log of the number of classes) whatever the representation, so T0 = 0.02, near the minimising
# temperature of the cosine SNNL of these layers at initialisation.
RESNET_PAPER = dict(model="resnet", distance="cosine", temperature=0.02, optimizer="sgd", lr=0.4,
                    lr_decay=0.01 ** (1 / 106), decay_steps=196, batch_size=256, steps=106 * 196,
                    size=32, channels=3)


def profile_values(profiles: dict, profile: str):
    """``profiles[profile]``; an unknown profile gives a one-line ValueError naming the known ones."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    return profiles[profile]


def config_from_profile(cls, profiles: dict, profile: str = "small", **overrides):
    """``cls(**profiles[profile], profile=profile, **overrides)``: unknown profile or field names
    give a one-line ValueError. ``profiles`` maps each profile name to its field values."""
    values = profile_values(profiles, profile)
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{**values, "profile": profile, **overrides})


# ---- data stand-ins, runs a sweep already has, training with a record ------------------------------
# Datasets of the paper that may be unavailable, and what stands in for them (size/channels make
# the substitute the same shape as the original).
SUBSTITUTES = {
    "cifar10": dict(dataset="fashion-mnist", size=32, channels=3,
                    note="Fashion-MNIST padded to 32x32 and replicated to 3 channels, a substitute for CIFAR-10"),
    "svhn": dict(dataset="fashion-mnist", size=None, channels=None,
                 note="Fashion-MNIST, a substitute for SVHN"),
}

def load_or_substitute(name: str, *, size: int | None = None, channels: int | None = None,
                       n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                       substitute: bool = True, stand_in: dict | None = None) -> tuple[Dataset, str | None, str]:
    """Load ``name``; if it is one of :data:`SUBSTITUTES` and cannot be loaded, load its stand-in
    (``stand_in``: the stand-in's own ``n_train`` / ``n_test``, where they differ).

    Returns ``(dataset, substitute_for, note)``: ``substitute_for`` is the dataset the data stands
    in for and ``note`` one line describing the substitute (None and "" when the real one loaded).
    """
    try:
        ds = load_dataset(name, n_train=n_train, n_test=n_test, size=size, channels=channels, seed=seed)
        return ds, None, ""
    except DatasetError as err:
        if not substitute or ds_key(name) not in SUBSTITUTES:
            raise
        sub = SUBSTITUTES[ds_key(name)]
        warnings.warn(f"{err}; using {sub['note']}", stacklevel=2)
        sizes = {"n_train": n_train, "n_test": n_test, **(stand_in or {})}
        ds = load_dataset(sub["dataset"], **sizes, size=sub["size"] or size, channels=sub["channels"] or channels,
                          seed=seed)
        return ds, ds_key(name), sub["note"]


def ds_key(name: str) -> str:
    return str(name).lower().replace("_", "-").replace("cifar-10", "cifar10")
