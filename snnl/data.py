"""Datasets by name, as in-memory tensors (SPEC section 6).

``load_dataset(name)`` returns a :class:`Dataset` with ``x_train, y_train, x_test, y_test``:
images as float32 tensors in [0, 1], shape (N, C, H, W), labels as int64. Names:

==================  =========================================================
``digits``          scikit-learn's bundled 8x8 digits (1,797 real handwritten
                    digits) resized to 28x28; needs no download. The default
                    of the small profile. Fixed stratified split 1,297 / 500.
``mnist``           ``torchvision.datasets.MNIST``
``fashion-mnist``   ``torchvision.datasets.FashionMNIST``
``notmnist``        notMNIST letters A-J, test split only (MNIST idx format)
``svhn``            ``torchvision.datasets.SVHN``
``cifar10``         ``torchvision.datasets.CIFAR10``
==================  =========================================================

Files live under a data root: the ``root`` argument, else the ``SNNL_DATA`` environment
variable, else ``~/.cache/snnl/data`` (:data:`DEFAULT_ROOT`), in torchvision's layout
(``<root>/MNIST/raw/train-images-idx3-ubyte``, ``<root>/SVHN/train_32x32.mat``,
``<root>/cifar-10-batches-py/data_batch_1``). Where the machine is online, missing files are
downloaded by torchvision. A folder of gzipped idx files can be imported with :func:`import_idx`
or the ``source=`` argument (checked: header, size). A missing or unreadable dataset raises a
one-line :class:`DatasetError` naming the dataset, the folder and the files expected; so do
inconsistent splits (labels per image, label range, image size: :func:`check_dataset`).

CIFAR-10's files are Python pickles, by the format's design: unpickling can run code, so put
only files from a source you trust under the data root.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_ROOT = Path("~/.cache/snnl/data").expanduser()
DATASETS = ("digits", "mnist", "fashion-mnist", "notmnist", "svhn", "cifar10")

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CLASSES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "notmnist": list("ABCDEFGHIJ"),
    "svhn": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


class DatasetError(RuntimeError):
    """A dataset is unknown, missing or unreadable. The message is one line."""


@dataclass
class Dataset:
    """Train and test splits in memory. ``x_*``: float32 (N, C, H, W) in [0, 1]; ``y_*``: int64."""

    name: str
    x_train: torch.Tensor | None
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    description: str = ""

    def check(self) -> Dataset:
        """Raise a one-line :class:`DatasetError` if the splits are inconsistent (see
        :func:`check_dataset`); return the dataset."""
        return check_dataset(self)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_test.shape[1:])

    def __repr__(self) -> str:
        n_tr = 0 if self.x_train is None else len(self.x_train)
        return f"Dataset({self.name!r}, train={n_tr}, test={len(self.x_test)}, shape={self.shape})"


def check_dataset(ds: Dataset) -> Dataset:
    """One-line :class:`DatasetError` unless each split has one label per image, labels are
    integers in ``0..num_classes-1``, and both splits have the same image shape (C, H, W)."""
    splits = [("test", ds.x_test, ds.y_test)] + ([("training", ds.x_train, ds.y_train)]
                                                  if ds.x_train is not None else [])
    for what, x, y in splits:
        if y is None or x.dim() != 4 or y.dim() != 1:
            raise DatasetError(f"{ds.name}: the {what} split needs images (N, C, H, W) and labels (N,), got "
                               f"{tuple(x.shape)} and {None if y is None else tuple(y.shape)}")
        if len(x) != len(y):
            raise DatasetError(f"{ds.name}: the {what} split has {len(x)} images but {len(y)} labels")
        if len(y) and (y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= ds.num_classes):
            raise DatasetError(f"{ds.name}: the {what} split's labels must be integers in 0..{ds.num_classes - 1}, "
                               f"got {y.min().item()}..{y.max().item()}")
    if ds.x_train is not None and ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise DatasetError(f"{ds.name}: training images are {tuple(ds.x_train.shape[1:])} but test images are "
                           f"{tuple(ds.x_test.shape[1:])}")
    return ds


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$SNNL_DATA``, else :data:`DEFAULT_ROOT`."""
    return Path(root or os.environ.get("SNNL_DATA") or DEFAULT_ROOT).expanduser()


def _folder(name: str) -> str:
    return {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "notmnist": "notMNIST"}[name]


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


def import_idx(name: str, source: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Copy idx files (``.gz`` or plain) of ``mnist``/``fashion-mnist``/``notmnist`` from
    ``source`` into ``<root>/<Folder>/raw``, decompressing them. Returns that folder.

    Each file is checked (:func:`idx_problem`) before it takes its place; a file already
    there that does not pass the check is replaced. A bad source file raises a one-line
    :class:`DatasetError` and leaves nothing behind."""
    name = _check_name(name)
    if name not in ("mnist", "fashion-mnist", "notmnist"):
        raise DatasetError(f"{name}: import_idx only handles idx datasets (mnist, fashion-mnist, notmnist)")
    source, raw = Path(source), data_root(root) / _folder(name) / "raw"
    files = _IDX[2:] if name == "notmnist" else _IDX
    if not source.is_dir():
        raise DatasetError(f"{name}: the source {source} is not a folder")
    try:
        created = _make_dirs(raw)
    except OSError as e:
        raise DatasetError(f"{name}: cannot create {raw}: {e.strerror or e}") from None
    try:
        for f in files:
            if (raw / f).exists() and idx_problem(raw / f) is None:
                continue
            gz, plain, part = source / (f + ".gz"), source / f, raw / f"{f}.{os.getpid()}.part"
            try:
                if gz.exists():
                    with gzip.open(gz, "rb") as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                elif plain.exists():
                    shutil.copyfile(plain, part)
                else:
                    raise DatasetError(f"{name}: {source} has neither {f}.gz nor {f}")
                problem = idx_problem(part)
                if problem is not None:
                    raise DatasetError(f"{name}: {gz if gz.exists() else plain} is not a valid idx file: {problem}")
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                part.unlink(missing_ok=True)
                raise DatasetError(f"{name}: cannot {'decompress' if gz.exists() else 'read'} "
                                   f"{gz if gz.exists() else plain}: {getattr(e, 'strerror', None) or e}") from None
            except DatasetError:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, raw / f)
    except DatasetError:
        _remove_empty(created)
        raise
    return raw


def _absent(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist, deepest first."""
    out, p = [], Path(folder)
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first."""
    created = _absent(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path], trees: bool = False) -> None:
    """Remove those of ``folders`` (deepest first) that are empty (with ``trees``, after
    removing the empty folders inside them)."""
    for p in folders:
        subs = sorted(os.walk(p, topdown=False), key=lambda w: -len(w[0])) if trees and p.is_dir() else []
        for sub in [w[0] for w in subs if w[0] != str(p)] + [p]:
            with contextlib.suppress(OSError):
                os.rmdir(sub)


def _check_name(name: str) -> str:
    key = str(name).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "not-mnist": "notmnist"}.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


# torchvision classes, adapted: notMNIST (test split only) and SVHN / CIFAR-10 checking
# that files exist when loading (torchvision's download step verifies checksums). Made on first
# use: `import snnl` does not load torchvision.
@functools.cache
def _torchvision_classes() -> dict[str, type]:
    from torchvision import datasets as tvd

    class _NotMNIST(tvd.MNIST):
        mirrors: list[str] = []
        resources = [("t10k-images-idx3-ubyte.gz", None), ("t10k-labels-idx1-ubyte.gz", None)]

        @property
        def raw_folder(self) -> str:
            return os.path.join(self.root, "notMNIST", "raw")

    class _SVHN(tvd.SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    class _CIFAR10(tvd.CIFAR10):
        """torchvision's CIFAR-10. Its files are Python pickles, by the format's design: loading
        them can run code, so only files from a trusted source belong under the data root."""

        def _check_integrity(self) -> bool:
            d = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(d, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    return {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "notmnist": _NotMNIST, "svhn": _SVHN,
            "cifar10": _CIFAR10}


def _expected(name: str, root: Path) -> tuple[Path, list[str]]:
    if name in ("mnist", "fashion-mnist", "notmnist"):
        return root / _folder(name) / "raw", list(_IDX[2:] if name == "notmnist" else _IDX)
    if name == "svhn":
        return root / "SVHN", ["train_32x32.mat", "test_32x32.mat"]
    return root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def _read_torchvision(name: str, root: Path, train: bool, download: bool):
    """Return (images uint8 (N, H, W) or (N, C, H, W), labels) via torchvision."""
    cls = _torchvision_classes()[name]
    if name in ("mnist", "fashion-mnist", "notmnist"):
        ds = cls(str(root), train=train, download=download and name != "notmnist")
        return ds.data, ds.targets
    if name == "svhn":
        ds = cls(str(root / "SVHN"), split="train" if train else "test", download=download)
        return torch.from_numpy(ds.data), torch.from_numpy(ds.labels)
    ds = cls(str(root), train=train, download=download)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.tensor(ds.targets)


def _load_split(name: str, root: Path, train: bool, download: bool, source: Path | None):
    folder, files = _expected(name, root)
    try:
        missing = [f for f in files if not (folder / f).is_file()]
    except OSError as e:
        raise DatasetError(f"{name}: cannot read the data folder {folder}: {e.strerror or e}") from None
    if missing and source is not None:
        import_idx(name, source, root)
        missing = [f for f in files if not (folder / f).is_file()]
    if missing and download and name != "notmnist":
        created = _absent(folder)  # the folders a failed download must not leave behind
        try:
            return _read_torchvision(name, root, train, download=True)
        except Exception as e:  # noqa: BLE001 - any failure becomes one clear line
            reason = f" (download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            _remove_empty(created, trees=True)
        else:
            reason = ""
    else:
        reason = ""
    if missing:
        raise DatasetError(
            f"{name}: data not found in {folder}; expected files: {', '.join(files)}{reason}. "
            f"Put them there (or set SNNL_DATA to a root that has them)")
    try:
        return _read_torchvision(name, root, train, download=False)
    except Exception as e:  # noqa: BLE001
        msg = " ".join(str(e).split())
        raise DatasetError(f"{name}: cannot read the files in {folder}: {type(e).__name__}"
                           f"{': ' + msg if msg else ' (corrupt or truncated file?)'}") from None


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    y = torch.from_numpy(d.target.astype(np.int64))
    i_tr, i_te = train_test_split(np.arange(len(y)), test_size=500, stratify=d.target, random_state=0)
    return x[i_tr], y[i_tr], x[i_te], y[i_te]


def _to_float(images: torch.Tensor) -> torch.Tensor:
    x = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x


def _resize(x: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    if size is not None and x.shape[-1] != size:
        if size > x.shape[-1] and (size - x.shape[-1]) % 2 == 0:  # pad (28 -> 32), the usual for MNIST-likes
            p = (size - x.shape[-1]) // 2
            x = F.pad(x, (p, p, p, p))
        else:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1).contiguous()
        elif channels == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise DatasetError(f"cannot convert {x.shape[1]} channels to {channels}")
    return x


def _subset(x, y, n, seed):
    if n is None or x is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = True,
                 source: str | os.PathLike | None = None, n_train: int | None = None,
                 n_test: int | None = None, size: int | None = None, channels: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`) as in-memory tensors.

    Args:
        root: data root (default ``$SNNL_DATA`` or ``snnl.data.DEFAULT_ROOT``).
        download: let torchvision download missing files (where online).
        source: a folder of idx files (``.gz`` or plain) to import missing files from.
        n_train, n_test: keep a random subset of this size (seeded by ``seed``).
        size, channels: resize (28 -> 32 pads with zeros) and replicate/average channels,
            e.g. ``size=32, channels=3`` to feed MNIST-like data to the CIFAR-10 ResNet.

    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_test.shape
    (torch.Size([1297, 1, 28, 28]), torch.Size([500, 1, 28, 28]))
    """
    key = _check_name(name)
    for what, v in (("n_train", n_train), ("n_test", n_test), ("size", size), ("channels", channels)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{what} must be a positive integer (or None), got {v!r}")
    if key == "digits":
        x_tr, y_tr, x_te, y_te = _digits()
        desc = "scikit-learn 8x8 digits resized to 28x28 (embedded, no download)"
    else:
        r = data_root(root)
        src = Path(source) if source is not None else None
        if key == "notmnist":
            x_tr = y_tr = None
        else:
            xi, y_tr = _load_split(key, r, True, download, src)
            x_tr = _to_float(xi)
        xi, y_te = _load_split(key, r, False, download, src)
        x_te = _to_float(xi)
        desc = f"torchvision {key} from {r}" if key != "notmnist" else f"notMNIST test split from {r}"
    y_tr = None if y_tr is None else y_tr.long()
    check_dataset(Dataset(key, x_tr, y_tr, x_te, y_te.long(), list(_CLASSES[key])))  # before subsets hide it
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, seed)
    x_te, y_te = _subset(x_te, y_te.long(), n_test, seed + 1)
    x_tr = None if x_tr is None else _resize(x_tr, size, channels)
    x_te = _resize(x_te, size, channels)
    return Dataset(key, x_tr, y_tr, x_te, y_te, list(_CLASSES[key]), desc)
