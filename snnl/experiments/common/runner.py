"""Resumable sweeps that several processes run side by side.

A sweep is a list of runs, each with a key; a run whose record exists is not pending. Each
process takes the first pending run nobody holds (:func:`claim`: an exclusive lock file with its
process id; the lock of a process that died is taken over), runs it, releases it, and asks for
the pending runs again, until none is left. A killed run resumes from its own checkpoint folder.
:func:`spawn` starts ``jobs`` such processes with one math thread each (two processes of N
threads on N cores spend their time waiting for each other).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence


def claim(lock_dir: str | os.PathLike, key: str) -> bool:
    """Take the run ``key`` for this process; False when a live process holds it."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_dir / f"{key}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return False  # a live process holds it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # its process died: take it over
            except PermissionError:
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(lock_dir: str | os.PathLike, key: str) -> None:
    (Path(lock_dir) / f"{key}.lock").unlink(missing_ok=True)


def run_pending(pending: Callable[[], Sequence], key: Callable[[object], str], run: Callable[[object], object],
                lock_dir: str | os.PathLike, log: Callable[[str], None] = print) -> int:
    """Run pending runs one after the other until none is left; returns how many this process ran."""
    n = 0
    while True:
        mine = next((r for r in pending() if claim(lock_dir, key(r))), None)
        if mine is None:
            return n
        try:
            if mine not in pending():
                continue  # finished by another process meanwhile
            t0 = time.time()
            result = run(mine)
            log(f"[{os.getpid()}] {key(mine)}: {result} ({time.time() - t0:.0f} s)")
            n += 1
        finally:
            release(lock_dir, key(mine))


def spawn(module: str, args: Sequence[str], jobs: int) -> list[int]:
    """Run ``python -m module *args`` in ``jobs`` processes (one math thread each); their exit codes."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for _ in range(jobs):
        procs.append(subprocess.Popen([sys.executable, "-m", module, *args], env=env))
        time.sleep(2)  # let the first claim its run
    return [p.wait() for p in procs]
