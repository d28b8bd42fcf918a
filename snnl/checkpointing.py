"""Checkpoints of resumable runs, shared by :func:`snnl.train.train` and :func:`snnl.gan.train_gan`.

* A loop keeps one file, ``<checkpoint_dir>/checkpoint.pt``: :func:`checkpoint_file` names it (and
  makes its folder), :func:`resume_state` reads it back for the same configuration (another
  configuration's checkpoint is refused with a one-line :class:`CheckpointError`), and a loop
  whose loss stops being finite raises :class:`TrainingDiverged` (:func:`diverged`), naming the
  step and the last good checkpoint.

* :func:`load_checkpoint` opens a checkpoint with ``torch.load(..., weights_only=True)``:
  only tensors, numbers, strings and plain containers are read back, so a crafted
  ``checkpoint.pt`` cannot run code when a run resumes from it. A file that is not such a
  checkpoint raises a one-line :class:`CheckpointError` naming it.
* :func:`save_checkpoint` writes to a temporary file with a name of its own (process id and
  a random part) in the same folder, then renames it over the checkpoint: a killed write
  never leaves a half-written checkpoint, and two writers never share a temporary file.
* :class:`CheckpointLock` holds ``checkpoint.lock`` in a checkpoint folder while a run uses
  it (an advisory ``flock``): a second live process resuming the same folder is refused
  with :class:`CheckpointLocked`; the lock of a process that died is released by the
  operating system, so the next run takes it over. :func:`use_folder` takes the lock for
  a run, and lets a run that only reads a *finished* checkpoint (a model trained elsewhere,
  reused) go ahead without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the temporary names stay unique)
    fcntl = None


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (corrupt, truncated, or holding other objects)."""


class CheckpointLocked(RuntimeError):
    """Another live process holds the checkpoint folder."""


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite: the one-line message names the step and the last checkpoint.

    Raised by :func:`snnl.train.train` and :func:`train_gan`; e.g. at a learning rate far too large:

    >>> from snnl.train import train
    >>> config = TrainConfig(alpha=1.0, lr=1e30, steps=5, batch_size=16, n_train=32, n_test=16, device="cpu")
    >>> try:
    ...     train(config, progress=False)
    ... except TrainingDiverged as err:
    ...     print(str(err).startswith("non-finite loss at step"))
    True
    """


def checkpoint_file(checkpoint_dir) -> Path | None:
    """``<checkpoint_dir>/checkpoint.pt`` with its folder created (None: no checkpoints)."""
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def resume_state(path: Path | None, config: dict, device) -> dict | None:
    """The state saved at ``path`` (None when there is no file), after checking that it was saved
    for ``config`` (the run's ``asdict(config)``)."""
    if path is None or not path.exists():
        return None
    state = load_checkpoint(path, map_location=device)
    if state.get("config") != config:
        raise CheckpointError(f"{path} belongs to a different configuration; remove it or use another folder")
    return state


def diverged(what: str, step: int, path: Path | None, detail: str = "") -> TrainingDiverged:
    """The error of a loop whose ``what`` (e.g. ``"loss"``) became non-finite at ``step``:
    ``non-finite <what> at step <step><detail>; the last good checkpoint is <path>``."""
    where = f"; the last good checkpoint is {path}" if path is not None and path.exists() else ""
    return TrainingDiverged(f"non-finite {what} at step {step}{detail}{where}")


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """The dict saved at ``path``, read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling, zip and OS errors alike become one line
        msg = " ".join(str(e).split())
        if len(msg) > 300:
            msg = msg[:300] + " ..."
        raise CheckpointError(f"cannot load checkpoint {path}: {type(e).__name__}: {msg or 'unreadable'}; "
                              "remove it or use another folder") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot load checkpoint {path}: it holds a {type(state).__name__}, not a dict; "
                              "remove it or use another folder")
    return state


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` at ``path`` atomically, through a temporary file of this write's own."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CheckpointLock:
    """``with CheckpointLock(folder):`` -- hold ``folder/checkpoint.lock`` for this process.

    Raises :class:`CheckpointLocked` (naming the holder's process id) when another open
    lock holds it; a lock left by a process that died is free again."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / "checkpoint.lock"
        self._fd = None

    def acquire(self) -> CheckpointLock:
        if fcntl is None or self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointLocked(f"{self.path.parent} is in use by another running process (pid {holder}); "
                                   "wait for it to finish or use another checkpoint folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def use_folder(folder: str | os.PathLike, steps: int):
    """Hold ``folder``'s lock while a run of ``steps`` steps uses it. When another live process
    holds it, go ahead only if ``folder/checkpoint.pt`` already has ``steps`` steps (the run
    then only reads it: nothing is written); else :class:`CheckpointLocked`."""
    lock = CheckpointLock(folder)
    try:
        lock.acquire()
    except CheckpointLocked:
        ckpt = Path(folder) / "checkpoint.pt"
        if not (ckpt.exists() and int(load_checkpoint(ckpt, map_location="cpu").get("step", -1)) >= steps):
            raise
        yield
        return
    try:
        yield
    finally:
        lock.release()


# ---- one record per run --------------------------------------------------------------------------
RECORD_NOTE = "record.txt"  # in a checkpoint folder: the file name of the run's results record (not *.json:
# a records folder may hold checkpoint folders, and every *.json under it is read as a record)


def note_record(checkpoint_dir, record: dict) -> None:
    """Keep the file name of ``record`` (written, so it has a ``"path"``) in ``checkpoint_dir``."""
    if checkpoint_dir is None or "path" not in record:
        return
    note = Path(checkpoint_dir) / RECORD_NOTE
    tmp = note.with_name(f".{note.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps({"file": Path(record["path"]).name}) + "\n")
    os.replace(tmp, note)


def written_record(checkpoint_dir, out_dir) -> dict | None:
    """The record a finished run in ``checkpoint_dir`` already wrote under ``out_dir``, or None."""
    if checkpoint_dir is None or out_dir is None:
        return None
    try:
        name = json.loads((Path(checkpoint_dir) / RECORD_NOTE).read_text())["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = Path(out_dir) / name
    if not path.exists():
        return None
    from snnl.results import read_record  # snnl.results imports torch only; no cycle

    return {**read_record(path), "path": str(path)}


# ---- stopping a run cleanly (preemption) ---------------------------------------------------------
class Preempted(RuntimeError):
    """The run stopped because a stop was requested (e.g. SIGTERM); its checkpoint was saved."""


_STOP = threading.Event()


def request_stop() -> None:
    """Ask the running loop to save a checkpoint at its next step and raise :class:`Preempted`
    (safe to call from a signal handler)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def clear_stop() -> None:
    _STOP.clear()
