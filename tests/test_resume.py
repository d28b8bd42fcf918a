"""snnl.checkpointing: the checkpoint file shared by train() and train_gan()."""

from __future__ import annotations

import pytest
import torch

import snnl
import snnl.train
from snnl.checkpointing import TrainingDiverged, checkpoint_file, diverged, resume_state, save_checkpoint


def test_one_training_diverged_everywhere():
    assert snnl.train.TrainingDiverged is TrainingDiverged is snnl.TrainingDiverged
    assert issubclass(TrainingDiverged, RuntimeError)


def test_checkpoint_round_trip_and_other_configurations_refused(tmp_path):
    assert checkpoint_file(None) is None
    path = checkpoint_file(tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" / "checkpoint.pt" and path.parent.is_dir() and not path.exists()
    assert resume_state(path, {"lr": 1.0}, "cpu") is None  # nothing saved yet
    save_checkpoint(path, {"config": {"lr": 1.0}, "step": 7, "w": torch.arange(3.0)})
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # the temporary file is gone
    state = resume_state(path, {"lr": 1.0}, "cpu")
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(3.0))
    with pytest.raises(ValueError, match="different configuration"):
        resume_state(path, {"lr": 2.0}, "cpu")


def test_diverged_names_the_step_and_an_existing_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    assert str(diverged("loss", 3, path, " (ce nan)")) == "non-finite loss at step 3 (ce nan)"  # no file yet
    path.write_bytes(b"")
    assert str(diverged("loss", 3, path)) == f"non-finite loss at step 3; the last good checkpoint is {path}"
    assert str(diverged("generator loss", 0, None)) == "non-finite generator loss at step 0"
