"""Checkpoints of a training loop, shared by :func:`snnl.train.train` and :func:`snnl.gan.train_gan`.

A loop keeps one file, ``<checkpoint_dir>/checkpoint.pt``: :func:`checkpoint_file` names it (and
makes its folder), :func:`load_checkpoint` reads it back for the same configuration (another
configuration's checkpoint is refused with a one-line ValueError), :func:`save_checkpoint`
replaces it atomically (a run killed while saving keeps its previous checkpoint). A loop whose
loss stops being finite raises :class:`TrainingDiverged`, naming the step and the last good
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite (the message names the step and the last checkpoint)."""


def checkpoint_file(checkpoint_dir) -> Path | None:
    """``<checkpoint_dir>/checkpoint.pt`` with its folder created (None: no checkpoints)."""
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def load_checkpoint(path: Path | None, config: dict, device) -> dict | None:
    """The state saved at ``path`` (None when there is no file), after checking that it was saved
    for ``config`` (the run's ``asdict(config)``)."""
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state["config"] != config:
        raise ValueError(f"{path} belongs to a different configuration; remove it or use another folder")
    return state


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def diverged(what: str, step: int, path: Path | None, detail: str = "") -> TrainingDiverged:
    """The error of a loop whose ``what`` (e.g. ``"loss"``) became non-finite at ``step``:
    ``non-finite <what> at step <step><detail>; the last good checkpoint is <path>``."""
    where = f"; the last good checkpoint is {path}" if path is not None and path.exists() else ""
    return TrainingDiverged(f"non-finite {what} at step {step}{detail}{where}")
