"""snnl.experiments.common and checkpoints: the profile mechanism, the paper recipe typed once,
Table 1's checkpoint folder names."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from snnl.experiments.adversarial import models as calibration_models
from snnl.experiments.ood import base as geometry_base
from snnl.experiments.regularization import fig8
from snnl.experiments.regularization import table1 as regularization
from snnl.experiments.discriminative import representations
from snnl.experiments.common.checkpoints import model_checkpoint
from snnl.experiments.common import PAPER_RECIPE, config_from_profile, profile_values
from snnl.train import TrainConfig


@dataclass
class Toy:
    profile: str = "small"
    steps: int = 10
    lr: float = 0.1


def test_profiles_and_overrides():
    profiles = {"small": {}, "paper": {"steps": 1000}}
    assert config_from_profile(Toy, profiles) == Toy()
    assert config_from_profile(Toy, profiles, "paper") == Toy("paper", 1000, 0.1)
    assert config_from_profile(Toy, profiles, "paper", steps=5, lr=0.5) == Toy("paper", 5, 0.5)  # overrides win
    with pytest.raises(ValueError, match="unknown profile 'huge'; choose one of: small, paper"):
        config_from_profile(Toy, profiles, "huge")
    with pytest.raises(ValueError, match="unknown Toy field\\(s\\): stepz"):
        config_from_profile(Toy, profiles, stepz=3)
    assert profile_values(profiles, "paper") == {"steps": 1000}


def test_the_paper_recipe_is_the_one_of_every_item():
    assert PAPER_RECIPE == {"steps": 14000, "batch_size": 256, "lr": 1e-4}  # Section 4, Table 1
    t1 = regularization.table1_config("mnist", 10.0, "paper")
    geo = geometry_base.config_for("paper")
    cal = calibration_models.make_config("paper")
    fig15 = TrainConfig(**representations.PRESETS[("15", "paper")])
    for steps, batch, lr in ((t1.steps, t1.batch_size, t1.lr), (geo.train_steps, geo.batch_size, geo.lr),
                             (cal.steps, cal.batch_size, cal.lr), (fig15.steps, fig15.batch_size, fig15.lr)):
        assert (steps, batch, lr) == (14000, 256, 1e-4)
    f8 = fig8.PROFILES_FIG8["paper"]
    assert (f8["steps"], f8["batch_size"], f8["lr"]) == (30000, 256, 1e-4)  # Fig. 8: a longer training
    assert f8["substitute"] == {"n_train": 6000, "steps": 14000, "eval_every": 250, "log_every": 250}


def test_table1_checkpoints_have_one_name_and_the_old_one_is_accepted(tmp_path):
    assert model_checkpoint(tmp_path, "table1", "fashion-mnist", 10.0, 0) == tmp_path / "table1_fashion-mnist_a10_s0"
    (tmp_path / "t1_fmnist_a10_s0").mkdir()
    assert model_checkpoint(tmp_path, "table1", "fashion-mnist", 10.0, 0) == tmp_path / "t1_fmnist_a10_s0"
    assert model_checkpoint(tmp_path, "table1", "mnist", 0.0, 1) == tmp_path / "table1_mnist_a0_s1"
    (tmp_path / "table1_fashion-mnist_a10_s0").mkdir()  # both there: the current name
    assert model_checkpoint(tmp_path, "table1", "fashion-mnist", 10.0, 0) == tmp_path / "table1_fashion-mnist_a10_s0"
    (tmp_path / "t1_mnist_a0_s0").mkdir()  # older names are Table 1's only
    assert model_checkpoint(tmp_path, "geometry", "mnist", 0.0, 0) == tmp_path / "geometry_mnist_a0_s0"


def test_markdown_table_writes_a_huge_float_with_four_significant_digits():
    from snnl.experiments.common import markdown_table
    rows = [{"loss": 1292145630.301}, {"loss": 99999.5}, {"loss": -2.5e7}]
    assert markdown_table(rows).splitlines()[2:] == ["| 1.292e+09 |", "| 99999.500 |", "| -2.5e+07 |"]
