"""Finished model checkpoints, shared between experiments (paper Section 5, Apps. E-H).

The paper-profile experiments of Section 5 reuse models trained elsewhere (Table 1's runs, the
calibration experiment's transfer sources), possibly still being trained by another process.
:func:`checkpoint_step` reads how far a checkpoint folder (``checkpoint.pt``, as
:func:`snnl.train.train` writes it) got; :func:`await_checkpoint` waits for it to finish.
"""

from __future__ import annotations

import time
from pathlib import Path

from snnl.checkpointing import load_checkpoint


def checkpoint_step(folder) -> int | None:
    """The step saved in ``folder/checkpoint.pt`` (None when there is none)."""
    path = Path(folder) / "checkpoint.pt"
    if not path.exists():
        return None
    return int(load_checkpoint(path, map_location="cpu")["step"])


def checkpoint_finished(folder, steps: int) -> bool:
    """Whether ``folder`` holds a checkpoint of at least ``steps`` steps."""
    step = checkpoint_step(folder)
    return step is not None and step >= steps


def await_checkpoint(folder, steps: int, wait: float, fresh: float = 3600.0) -> None:
    """Wait (up to ``wait`` s) until ``folder`` holds a finished checkpoint (another process
    training it); then a RuntimeError. With ``wait=0``, return at once when there is no
    checkpoint or an unfinished one untouched for ``fresh`` s (train() then trains / resumes it)."""
    path, deadline = Path(folder) / "checkpoint.pt", time.time() + wait
    while True:
        step = checkpoint_step(folder)
        if step is not None and step >= steps:
            return
        if time.time() >= deadline:
            if wait == 0 and (step is None or time.time() - path.stat().st_mtime > fresh):
                return
            raise RuntimeError(f"{path}: {'missing' if step is None else f'at step {step}/{steps}'} "
                               f"after waiting {wait:.0f} s; another run is still training it")
        time.sleep(min(60.0, max(1.0, deadline - time.time())))


# ---- naming: one folder name per trained model, older names accepted -----------------------------
SHORT = {"fashion-mnist": "fmnist"}  # the older folder names' short dataset names


def model_checkpoint(root, experiment: str, dataset: str, alpha: float, seed: int) -> Path:
    """``<root>/<experiment>_<dataset>_a<alpha>_s<seed>``, the folder of one trained model (Table 1's:
    ``table1_mnist_a10_s0``). A folder under the older name ``t1_<short>_a<alpha>_s<seed>`` (Table 1
    models as Section 5 named them, e.g. ``t1_fmnist_a10_s0``) is used when it exists and the
    new one does not, so existing checkpoints keep working."""
    root = Path(root)
    folder = root / f"{experiment}_{dataset}_a{alpha:g}_s{seed}"
    if experiment == "table1" and not folder.exists():
        old = root / f"t1_{SHORT.get(dataset, dataset)}_a{alpha:g}_s{seed}"
        if old.exists():
            return old
    return folder
