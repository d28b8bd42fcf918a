"""Results records, seeding and device selection (SPEC section 7).

Every run that reports a number writes one JSON record::

    experiment, profile, dataset, seed, config, metrics, history (optional),
    device, torch_version, git_commit, started_at, wall_seconds

Records are written atomically (a temporary file in the same folder, then
``os.replace``) so a killed run never leaves a half-written record behind.

>>> run = Run("table1", profile="small", dataset="digits", seed=0, config={"alpha": 10})
>>> path = run.finish({"test_accuracy": 0.97}, out_dir="results/small")  # doctest: +SKIP
>>> read_record(path)["metrics"]  # doctest: +SKIP
{'test_accuracy': 0.97}
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

RECORD_FIELDS = (
    "experiment", "profile", "dataset", "seed", "config", "metrics", "history",
    "device", "torch_version", "git_commit", "started_at", "wall_seconds",
)
PROFILES = ("small", "paper")
RECORD_PROFILES = PROFILES + ("screen",)  # "screen": shortened screening runs of a study


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a seeded torch generator.

    The same seed gives the same numbers on CPU. (On GPU, cuDNN may still pick
    non-deterministic kernels; records say which device produced them.)
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else Apple MPS, else CPU; anything else is checked."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} requested but Apple MPS is not available here")
    return dev


def device_name(device: torch.device) -> str:
    """A human-readable device description for records (``cpu`` or the GPU's name)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current commit hash (with ``-dirty`` if the tree has changes), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


LOADED_COMMIT = git_commit()
"""The commit of the code this process runs: taken when :mod:`snnl` is imported, so that a
process running several experiments records the code it loaded, not a later checkout."""


@dataclass
class Run:
    """Collects what a results record needs while an experiment runs.

    Create it at the start (it notes the time), call :meth:`finish` with the
    metrics at the end: it writes the record and returns its path.
    """

    experiment: str
    profile: str
    dataset: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    commit: str = LOADED_COMMIT  # the code that runs: as it was when the package was imported

    def __post_init__(self):
        if self.profile not in RECORD_PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(RECORD_PROFILES)}")

    def record(self, metrics: dict[str, Any], history: dict[str, Any] | None = None) -> dict[str, Any]:
        rec = {
            "experiment": self.experiment, "profile": self.profile, "dataset": self.dataset,
            "seed": self.seed, "config": self.config, "metrics": metrics,
            "device": self.device, "torch_version": torch.__version__,
            "git_commit": self.commit, "started_at": self.started_at,
            "wall_seconds": round(time.perf_counter() - self._t0, 3),
        }
        if history is not None:
            rec["history"] = history
        return rec

    def finish(self, metrics: dict[str, Any], out_dir: str | os.PathLike | None,
               history: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build the record; write it under ``out_dir`` (if given). Returns the record,
        with its file path under the key ``"path"`` when written (not stored in the file)."""
        rec = self.record(metrics, history)
        if out_dir is not None:
            stamp = self.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
            # the config's hash keeps runs of a sweep that start in the same second apart
            digest = hashlib.sha1(json.dumps(_jsonable(self.config), sort_keys=True).encode()).hexdigest()[:8]
            name = f"{self.experiment}_{self.dataset}_seed{self.seed}_{stamp}_{digest}.json"
            path = write_record(Path(out_dir) / name, rec)
            rec = {**rec, "path": str(path)}
        return rec


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (torch.device, Path)):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON at ``path`` atomically; check the required fields."""
    missing = [k for k in RECORD_FIELDS if k != "history" and k not in record]
    if missing:
        raise ValueError(f"results record lacks field(s): {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable({k: v for k, v in record.items() if k != "path"}), indent=1, sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read one record back; a clear error if it is not a valid record."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read results record {path}: {e}") from None
    missing = [k for k in RECORD_FIELDS if k != "history" and k not in rec]
    if missing:
        raise ValueError(f"{path} is not a results record (missing {', '.join(missing)})")
    return rec


def load_records(root: str | os.PathLike, experiment: str | None = None, **where) -> list[dict[str, Any]]:
    """All records under ``root`` (recursively), optionally filtered by experiment and
    top-level fields (``profile="paper"``, ``dataset="mnist"``), sorted by start time."""
    root = Path(root)
    out = []
    for p in sorted(root.rglob("*.json")) if root.exists() else []:
        if p.name.startswith(".tmp-"):
            continue
        rec = read_record(p)
        if experiment is not None and rec["experiment"] != experiment:
            continue
        if any(rec.get(k) != v for k, v in where.items()):
            continue
        rec["path"] = str(p)
        out.append(rec)
    return sorted(out, key=lambda r: r["started_at"])
