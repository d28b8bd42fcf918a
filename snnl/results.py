"""Results records, seeding and device selection (SPEC section 7).

Every run that reports a number writes one JSON record::

    experiment, profile, dataset, seed, config, metrics, history (optional),
    device, torch_version, git_commit, started_at, wall_seconds

Records are written atomically (a temporary file in the same folder, then a hard link
to the record's name, which never replaces an existing file) so a killed run never
leaves a half-written record behind and no record overwrites another. A record's
file name is ``<experiment>_<dataset>_seed<seed>_<UTC start>_<config hash>_<random>.json``:
unique per run, even for identical runs started in the same second. Files get the
usual permissions (``0666`` less the umask), so others sharing a results folder can
read them.

>>> run = Run("table1", profile="small", dataset="digits", seed=0, config={"alpha": 10})
>>> path = run.finish({"test_accuracy": 0.97}, out_dir="results/small")  # doctest: +SKIP
>>> read_record(path)["metrics"]  # doctest: +SKIP
{'test_accuracy': 0.97}
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import random
import re
import secrets
import subprocess
import time
import warnings
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
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_TAGS: contextvars.ContextVar[dict] = contextvars.ContextVar("snnl_record_tags", default={})


@contextlib.contextmanager
def record_tags(**tags):
    """Add fields to every record built inside a ``with`` block (a sweep names each run's trial).

    The fields go on the top level of the record, beside ``config`` and ``metrics``; they may
    not replace the record's own fields:

    >>> with record_tags(trial={"study": "demo", "number": 3}):
    ...     rec = Run("demo", profile="small", dataset="digits", seed=0).finish({"acc": 0.9}, "tagged")
    >>> [r["trial"]["number"] for r in load_records("tagged", "demo")]
    [3]
    """
    clash = sorted(set(tags) & set(RECORD_FIELDS))
    if clash:
        raise ValueError(f"record tags may not replace the record's own fields: {', '.join(clash)}")
    token = _TAGS.set({**_TAGS.get(), **tags})
    try:
        yield
    finally:
        _TAGS.reset(token)


def check_name(value, what: str = "experiment") -> str:
    """``value`` if it can be part of a file name (letters, digits, ``_ . + -``, not starting
    with a dot or a dash, no path separator); else a one-line ValueError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > 100:
        raise ValueError(f"{what} name {value!r} cannot be part of a file name: use letters, digits, "
                         "'_', '.', '+' and '-' (not first), at most 100 characters")
    return value


def check_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and check that files can be created in it, before a run
    spends time on a result it could not write; a one-line ValueError otherwise (a file in
    its place, no permission). Returns it as a Path."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{what} {folder} cannot be written: {e.strerror or e}") from None
    return folder


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a seeded torch generator.

    The same seed gives the same numbers on CPU. (On GPU, cuDNN may still pick
    non-deterministic kernels; records say which device produced them.) A seeded
    :class:`CNN` starts from the same weights:

    >>> gen = seed_everything(0)
    >>> first = CNN().conv1.weight.clone()
    >>> _ = seed_everything(0)
    >>> bool((CNN().conv1.weight == first).all()), type(gen).__name__
    (True, 'Generator')
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
    """The device to run on: ``"auto"`` → CUDA if available, else Apple MPS, else CPU; anything else is checked.

    >>> device = resolve_device("auto")
    >>> model = CNN().to(device)
    >>> resolve_device("cpu").type, device.type in ("cuda", "mps", "cpu")
    ('cpu', True)
    """
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
    except RuntimeError:
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
    """Collects what a results record needs while an experiment runs, and writes the record.

    Create it at the start (it notes the time), call :meth:`finish` with the
    metrics at the end: it writes the record and returns it, with its ``"path"``.
    :func:`load_records` finds it:

    >>> run = Run("table1", profile="small", dataset="digits", seed=0, config={"alpha": 10.0})
    >>> record = run.finish({"test_accuracy": 0.95}, out_dir="results/table1")
    >>> [r["config"]["alpha"] for r in load_records("results", "table1", dataset="digits")]
    [10.0]
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
        check_name(self.experiment, "experiment")
        check_name(self.dataset, "dataset")

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
        rec.update(_TAGS.get())
        return rec

    def finish(self, metrics: dict[str, Any], out_dir: str | os.PathLike | None,
               history: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build the record; write it under ``out_dir`` (if given) in a file of its own, never
        replacing another. Returns the record, with its file path under the key ``"path"``
        when written (not stored in the file)."""
        rec = self.record(metrics, history)
        if out_dir is not None:
            stamp = self.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
            # the config's hash keeps runs of a sweep apart; the random part, identical runs
            digest = hashlib.sha1(json.dumps(_jsonable(self.config), sort_keys=True).encode()).hexdigest()[:8]
            for attempt in range(100):
                name = f"{self.experiment}_{self.dataset}_seed{self.seed}_{stamp}_{digest}_{secrets.token_hex(4)}.json"
                try:
                    path = write_record(Path(out_dir) / name, rec)
                    break
                except FileExistsError:
                    if attempt == 99:
                        raise
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
    """Write a results record as JSON at ``path`` atomically, its required fields checked.

    An existing file at ``path`` is never replaced: FileExistsError. The file's mode is
    ``0666`` less the umask. :meth:`Run.finish` writes through it; :func:`read_record` reads back:

    >>> record = Run("demo", profile="small", dataset="digits", seed=0).record({"accuracy": 0.9})
    >>> path = write_record("records/demo.json", record)
    >>> read_record(path)["metrics"]
    {'accuracy': 0.9}
    """
    missing = [k for k in RECORD_FIELDS if k != "history" and k not in record]
    if missing:
        raise ValueError(f"results record lacks field(s): {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable({k: v for k, v in record.items() if k != "path"}), indent=1, sort_keys=False)
    tmp = path.parent / f".tmp-{os.getpid()}-{secrets.token_hex(6)}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.link(tmp, path)  # FileExistsError rather than replacing a record
    finally:
        tmp.unlink(missing_ok=True)
    return path


_FIELD_TYPES = {"experiment": str, "profile": str, "dataset": str, "config": dict, "metrics": dict,
                "started_at": str, "git_commit": str}


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read one results record back, checked: a one-line ValueError names a file that is not one.

    (Not JSON, not UTF-8, not an object, a field missing or of the wrong type.) The record of
    a :class:`Run`:

    >>> path = Run("demo", profile="small", dataset="digits", seed=1).finish({"ce": 0.5}, "records")["path"]
    >>> read_record(path)["seed"], read_record(path)["metrics"]
    (1, {'ce': 0.5})
    >>> with open("records/bad.json", "w") as f:
    ...     _ = f.write("[1, 2]")
    >>> try:
    ...     read_record("records/bad.json")
    ... except ValueError as e:
    ...     print(e)
    records/bad.json is not a results record (a JSON list, not an object)
    """
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"cannot read results record {path}: {' '.join(str(e).split())}") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path} is not a results record (a JSON {type(rec).__name__}, not an object)")
    missing = [k for k in RECORD_FIELDS if k != "history" and k not in rec]
    if missing:
        raise ValueError(f"{path} is not a results record (missing {', '.join(missing)})")
    wrong = [f"{k} is {type(rec[k]).__name__}" for k, t in _FIELD_TYPES.items() if not isinstance(rec[k], t)]
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        wrong.append(f"seed is {type(rec['seed']).__name__}")
    if wrong:
        raise ValueError(f"{path} is not a results record ({', '.join(wrong)})")
    return rec


def load_records(root: str | os.PathLike, experiment: str | None = None, **where) -> list[dict[str, Any]]:
    """All results records under a folder (recursively), filtered by experiment and fields, oldest first.

    Filters: ``experiment`` and top-level fields (``profile="paper"``, ``dataset="mnist"``).
    A file that is not a valid record is skipped with a warning naming it. Each record gets
    its file's ``"path"``. Records of :class:`Run`:

    >>> for seed in (0, 1):
    ...     _ = Run("demo", profile="small", dataset="digits", seed=seed).finish({"acc": 0.9 + seed / 100}, "runs")
    >>> [r["metrics"]["acc"] for r in load_records("runs", "demo", profile="small")]
    [0.9, 0.91]
    """
    root = Path(root)
    out = []
    for p in sorted(root.rglob("*.json")) if root.exists() else []:
        if p.name.startswith(".tmp-"):
            continue
        try:
            rec = read_record(p)
        except ValueError as e:
            warnings.warn(f"skipped: {e}", RuntimeWarning, stacklevel=2)
            continue
        if experiment is not None and rec["experiment"] != experiment:
            continue
        if any(rec.get(k) != v for k, v in where.items()):
            continue
        rec["path"] = str(p)
        out.append(rec)
    return sorted(out, key=lambda r: r["started_at"])
