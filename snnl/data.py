"""Datasets by name, as in-memory tensors (SPEC section 6).

``load_dataset(name)`` returns a :class:`Dataset` with ``x_train, y_train,
x_test, y_test``: images as float32 tensors in [0, 1], shape (N, C, H, W),
labels as int64. Names:

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

Files live under a data root: the ``root`` argument, else the ``SNNL_DATA``
environment variable, else ``~/.cache/snnl/data`` (:data:`DEFAULT_ROOT`).
The layout is torchvision's: ``<root>/MNIST/raw/train-images-idx3-ubyte`` ...,
``<root>/SVHN/train_32x32.mat``, ``<root>/cifar-10-batches-py/data_batch_1``.
Where the machine is online, missing files are downloaded by torchvision.
A folder of gzipped idx files (as distributed by LeCun) can be imported with
:func:`import_idx` or the ``source=`` argument. A missing or unreadable
dataset raises a one-line :class:`DatasetError` naming the dataset, the folder
and the files expected.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
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

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_test.shape[1:])

    def __repr__(self) -> str:
        n_tr = 0 if self.x_train is None else len(self.x_train)
        return f"Dataset({self.name!r}, train={n_tr}, test={len(self.x_test)}, shape={self.shape})"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$SNNL_DATA``, else :data:`DEFAULT_ROOT`."""
    return Path(root or os.environ.get("SNNL_DATA") or DEFAULT_ROOT).expanduser()


def _folder(name: str) -> str:
    return {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "notmnist": "notMNIST"}[name]


def import_idx(name: str, source: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Copy idx files (``.gz`` or plain) of ``mnist``/``fashion-mnist``/``notmnist`` from
    ``source`` into ``<root>/<Folder>/raw``, decompressing them. Returns that folder."""
    name = _check_name(name)
    if name not in ("mnist", "fashion-mnist", "notmnist"):
        raise DatasetError(f"{name}: import_idx only handles idx datasets (mnist, fashion-mnist, notmnist)")
    source, raw = Path(source), data_root(root) / _folder(name) / "raw"
    files = _IDX[2:] if name == "notmnist" else _IDX
    raw.mkdir(parents=True, exist_ok=True)
    for f in files:
        if (raw / f).exists():
            continue
        gz, plain = source / (f + ".gz"), source / f
        if gz.exists():
            try:
                with gzip.open(gz, "rb") as src, open(raw / (f + ".part"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as e:
                (raw / (f + ".part")).unlink(missing_ok=True)
                raise DatasetError(f"{name}: cannot decompress {gz}: {e}") from None
            os.replace(raw / (f + ".part"), raw / f)
        elif plain.exists():
            shutil.copyfile(plain, raw / f)
        else:
            raise DatasetError(f"{name}: {source} has neither {f}.gz nor {f}")
    return raw


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
    missing = [f for f in files if not (folder / f).exists()]
    if missing and source is not None:
        import_idx(name, source, root)
        missing = [f for f in files if not (folder / f).exists()]
    if missing and download and name != "notmnist":
        try:
            return _read_torchvision(name, root, train, download=True)
        except Exception as e:  # noqa: BLE001 - any failure becomes one clear line
            reason = f" (download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
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
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, seed)
    x_te, y_te = _subset(x_te, y_te.long(), n_test, seed + 1)
    x_tr = None if x_tr is None else _resize(x_tr, size, channels)
    x_te = _resize(x_te, size, channels)
    return Dataset(key, x_tr, y_tr, x_te, y_te, list(_CLASSES[key]), desc)
