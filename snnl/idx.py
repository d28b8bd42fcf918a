"""The idx files of MNIST, Fashion-MNIST and notMNIST: their checks before they enter a data root.

A file is checked twice: its form (:func:`idx_problem`: the header and the size agree) and its
content, against the known md5 digests of each dataset's *uncompressed* files (:data:`MD5`), so
that one dataset's files cannot pass for another's (:func:`content_problem` names what a file
is). :func:`import_files` checks every file before any enters the data root;
:func:`snnl.data.import_idx` and :func:`snnl.load_dataset` use it. The folder helpers let a
failed import or download leave no empty folder behind.

>>> whose("a25bea736e30d166cdddb491f175f624")
('mnist', 'train-labels-idx1-ubyte')
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "notmnist": "notMNIST"}
"""The idx datasets, by name, as their messages name them."""
MD5 = {
    "mnist": {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "fashion-mnist": {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                      "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                      "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                      "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
    "notmnist": {"t10k-images-idx3-ubyte": "1e78b07d677d6e4de2c8857bafff012e",  # the test split only
                 "t10k-labels-idx1-ubyte": "b10b3ef34b4e468313a7b24c216c6a53"},
}
"""md5 of each dataset's uncompressed idx files (torchvision's sources; notMNIST: its test split)."""
OVERRIDE = "pass verify=False (--no-verify on the command line) for a custom copy"


class IdxError(Exception):
    """An idx file cannot be imported (the message is one line; :mod:`snnl.data` names the dataset)."""


def idx_problem(path: str | os.PathLike) -> str | None:
    """Why the file at ``path`` is not a well-formed idx file of unsigned bytes (images:
    3 dimensions, labels: 1), or None if it is: the header and the file's size must agree."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] not in (1, 3):
                return "not an idx file of unsigned bytes (bad or missing header)"
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]).ljust(4 * head[3], b"\xff"))
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    expected = 4 + 4 * len(dims) + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        return f"{size} bytes where its header {list(dims)} needs {expected}"
    return None


def md5_of(path: str | os.PathLike) -> str:
    """The md5 digest (hex) of a file's bytes."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def whose(digest: str) -> tuple[str, str] | None:
    """``(dataset, file)`` of the known idx file with this md5 digest, or None."""
    return next(((name, f) for name, files in MD5.items() for f, d in files.items() if d == digest), None)


def content_problem(name: str, file: str, digest: str) -> str | None:
    """Why a file of md5 ``digest`` cannot be ``name``'s ``file``, or None if it is: another
    known file (named: e.g. MNIST's, offered as Fashion-MNIST's) or an unknown content."""
    expected = MD5[name][file]
    if digest == expected:
        return None
    found = whose(digest)
    if found is not None:
        other, other_file = found
        return (f"it is {LABELS[other]}'s {other_file}, not {LABELS[name]}'s {file} (a folder of the wrong "
                f"dataset?); import it as {other!r}")
    return f"its content is not {LABELS[name]}'s {file} (md5 {digest}, expected {expected}); {OVERRIDE}"


def file_problem(name: str, file: str, path: Path, verify: bool = True) -> str | None:
    """Why ``path`` cannot be ``name``'s ``file`` (its form, then with ``verify`` its content), or None."""
    problem = idx_problem(path)
    if problem is not None:
        return f"is not a valid idx file: {problem}"
    problem = content_problem(name, file, md5_of(path)) if verify else None
    return None if problem is None else f"is refused: {problem}"


def import_files(name: str, source: Path, raw: Path, files: list[str], verify: bool = True) -> None:
    """``files`` of dataset ``name`` from ``source`` (each ``.gz`` or plain) into ``raw``: all
    checked first (:func:`file_problem`), then all moved into place; when one is refused, an
    :class:`IdxError` and nothing left behind (no file, no folder made for them)."""
    try:
        created = make_dirs(raw)
    except OSError as e:
        raise IdxError(f"cannot create {raw}: {e.strerror or e}") from None
    staged: list[tuple[Path, Path]] = []
    try:
        for f in files:
            src = next((p for p in (source / (f + ".gz"), source / f) if p.is_file()), None)
            if src is None:
                raise IdxError(f"{source} has neither {f}.gz nor {f}")
            part = raw / f"{f}.{os.getpid()}.part"
            staged.append((part, raw / f))
            try:
                copy_out(src, part)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise IdxError(f"cannot {'decompress' if src.suffix == '.gz' else 'read'} {src}: "
                               f"{getattr(e, 'strerror', None) or e}") from None
            problem = file_problem(name, f, part, verify)
            if problem is not None:
                raise IdxError(f"{src} {problem}")
        for part, dest in staged:
            os.replace(part, dest)
    except IdxError:
        for part, _ in staged:
            part.unlink(missing_ok=True)
        remove_empty(created)
        raise


def foreign_labels(name: str, folder: Path, train: bool) -> str | None:
    """Why the files in ``folder`` are not ``name``'s, when the split's labels file is another
    known file (another dataset's, say), else None: one small file's digest, cheap at every load."""
    f = f"{'train' if train else 't10k'}-labels-idx1-ubyte"
    found = whose(md5_of(folder / f))
    if found is None or found == (name, f):
        return None
    return (f"the files in {folder} are not {LABELS[name]}'s: {f} is {LABELS[found[0]]}'s {found[1]}; remove "
            f"them and import {LABELS[name]}'s, or {OVERRIDE}")


def copy_out(src: Path, dst: Path) -> None:
    """``src`` (gzipped when its name ends in ``.gz``) written to ``dst``, decompressed."""
    if src.name.endswith(".gz"):
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, dst)


def absent_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist, deepest first."""
    out, p = [], Path(folder)
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first."""
    created = absent_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty(folders: list[Path], trees: bool = False) -> None:
    """Remove those of ``folders`` (deepest first) that are empty (with ``trees``, after
    removing the empty folders inside them)."""
    for p in folders:
        subs = sorted(os.walk(p, topdown=False), key=lambda w: -len(w[0])) if trees and p.is_dir() else []
        for sub in [w[0] for w in subs if w[0] != str(p)] + [p]:
            with contextlib.suppress(OSError):
                os.rmdir(sub)
