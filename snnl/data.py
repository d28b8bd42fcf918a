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
or the ``source=`` argument, and gzipped idx files already in the data root are decompressed in
place; either way every file is checked before any takes its place (:mod:`snnl.idx`: header,
size, and the known digests of each dataset's files, so that MNIST's files cannot pass for
Fashion-MNIST's; ``verify=False`` for a custom copy). A missing or unreadable dataset raises a
one-line :class:`DatasetError` naming the dataset, the folder and the files expected; so do
inconsistent splits (labels per image, label range, image size: :func:`check_dataset`).
torchvision (and scikit-learn for ``digits``) come with the extra ``snnl[experiments]``.

CIFAR-10's files are Python pickles, by the format's design: unpickling can run code, so put
only files from a source you trust under the data root.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snnl.extras import require
from snnl.idx import (IDX_FILES, LABELS, IdxError, absent_folders, file_problem, foreign_labels, import_files,
                      remove_empty)

DEFAULT_ROOT = Path("~/.cache/snnl/data").expanduser()
DATASETS = ("digits", "mnist", "fashion-mnist", "notmnist", "svhn", "cifar10")
"""The names :func:`load_dataset` accepts."""
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
    """A dataset is unknown, missing, unreadable, inconsistent or another dataset's: a one-line message.

    >>> try:
    ...     load_dataset("mnist", root="empty", download=False)
    ... except DatasetError as err:
    ...     message = str(err)
    >>> message.split(";")[0], "\\n" in message
    ('mnist: data not found in empty/MNIST/raw', False)
    """


@dataclass
class Dataset:
    """Train and test splits in memory. ``x_*``: float32 (N, C, H, W) in [0, 1]; ``y_*``: int64.

    :func:`load_dataset` returns one; a dataset of one's own is made directly (and checked by
    its ``check()``), and :func:`snnl.train.train` takes it as ``data=``:

    >>> import torch
    >>> ds = Dataset("mine", torch.rand(60, 1, 28, 28), torch.arange(60) % 10, torch.rand(20, 1, 28, 28),
    ...              torch.arange(20) % 10, classes=[str(i) for i in range(10)]).check()
    >>> ds, ds.num_classes, ds.shape
    (Dataset('mine', train=60, test=20, shape=(1, 28, 28)), 10, (1, 28, 28))
    >>> model = build_model("cnn", ds.shape, ds.num_classes)
    """

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


def import_idx(name: str, source: str | os.PathLike, root: str | os.PathLike | None = None, *,
               verify: bool = True) -> Path:
    """Copy idx files (``.gz`` or plain) of ``mnist``/``fashion-mnist``/``notmnist`` from
    ``source`` into ``<root>/<Folder>/raw``, decompressing them. Returns that folder.

    Every file is checked before any takes its place: its form (header and size) and, with
    ``verify``, its content against the known md5 digests of the dataset's uncompressed files
    (:data:`snnl.idx.MD5`), so that another dataset's files (MNIST's offered as Fashion-MNIST's)
    or an unknown content are refused in one line that names what was found; ``verify=False``
    takes a custom copy. A file already there that passes the same checks is kept, else
    replaced. A refused import raises a one-line :class:`DatasetError` and leaves the data root
    as it was."""
    name = _check_name(name)
    if name not in LABELS:
        raise DatasetError(f"{name}: import_idx only handles idx datasets (mnist, fashion-mnist, notmnist)")
    source, raw = Path(source), data_root(root) / _folder(name) / "raw"
    if not source.is_dir():
        raise DatasetError(f"{name}: the source {source} is not a folder")
    files = _expected(name, data_root(root))[1]
    try:
        keep = [f for f in files if (raw / f).exists() and file_problem(name, f, raw / f, verify) is None]
        import_files(name, source, raw, [f for f in files if f not in keep], verify)
    except IdxError as e:
        raise DatasetError(f"{name}: {e}") from None
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
    tvd = require("torchvision.datasets", "experiments", "load_dataset (every dataset but your own)")

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
        return root / _folder(name) / "raw", list(IDX_FILES[2:] if name == "notmnist" else IDX_FILES)
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


def _load_split(name: str, root: Path, train: bool, download: bool, source: Path | None, verify: bool = True):
    _torchvision_classes()  # here, not in the broad excepts below: a missing extra says so in its own line
    folder, files = _expected(name, root)
    try:
        missing = [f for f in files if not (folder / f).is_file()]
        packed = [f for f in missing if (folder / f"{f}.gz").is_file()]
    except OSError as e:
        raise DatasetError(f"{name}: cannot read the data folder {folder}: {e.strerror or e}") from None
    if missing and source is not None:
        import_idx(name, source, root, verify=verify)
    elif missing and packed == missing and name in LABELS:  # torchvision's layout, still gzipped: decompressed
        try:
            import_files(name, folder, folder, missing, verify)
        except IdxError as e:
            raise DatasetError(f"{name}: {e}") from None
    missing = [f for f in files if not (folder / f).is_file()]
    reason = ""
    if missing and download and name != "notmnist":
        created = absent_folders(folder)  # the folders a failed download must not leave behind
        try:
            return _read_torchvision(name, root, train, download=True)
        except Exception as e:  # noqa: BLE001 - any failure becomes one clear line
            reason = f" (download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            remove_empty(created, trees=True)
    if missing:
        idx = name in LABELS
        raise DatasetError(
            f"{name}: data not found in {folder}; expected files: {', '.join(files)}{' (or each .gz)' * idx}{reason}. "
            f"Put them there{', pass source= a folder of them (.gz or not)' * idx} or set SNNL_DATA to a root "
            f"that has them")
    problem = foreign_labels(name, folder, train) if verify and name in LABELS else None
    if problem is not None:
        raise DatasetError(f"{name}: {problem}")
    try:
        return _read_torchvision(name, root, train, download=False)
    except Exception as e:  # noqa: BLE001
        msg = " ".join(str(e).split())
        raise DatasetError(f"{name}: cannot read the files in {folder}: {type(e).__name__}"
                           f"{': ' + msg if msg else ' (corrupt or truncated file?)'}") from None


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    load_digits = require("sklearn.datasets", "experiments", "load_dataset('digits')").load_digits
    train_test_split = require("sklearn.model_selection", "experiments", "load_dataset('digits')").train_test_split

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
                 seed: int = 0, verify: bool = True) -> Dataset:
    """Load a dataset by name (one of :data:`DATASETS`) as a :class:`Dataset` of in-memory tensors.

    Args:
        root: data root (default ``$SNNL_DATA`` or ``snnl.data.DEFAULT_ROOT``).
        download: let torchvision download missing files (where online).
        source: a folder of idx files (``.gz`` or plain) to import missing files from (checked,
            see ``verify``). Without it, idx files still gzipped in the data root
            (``<root>/FashionMNIST/raw/*.gz``, torchvision's layout) are decompressed in place.
        n_train, n_test: keep a random subset of this size (seeded by ``seed``).
        size: the side of the square images, in pixels: 28 -> 32 pads with zeros, any other change
            resizes (bilinear), e.g. ``size=32`` for the CIFAR-10 ResNet.
        channels: the number of colour channels: 1 -> 3 replicates the grey channel, 3 -> 1
            averages them, e.g. ``channels=3`` to feed MNIST-like images to an RGB model.
        verify: check idx files against the known digests of MNIST's, Fashion-MNIST's and
            notMNIST's files: an import of another dataset's files or of an unknown content is
            refused, and so is a load whose labels file in the data root is another dataset's
            (one line naming what was found). ``False`` for a custom copy.

    With :class:`CNN` and :func:`evaluate`:

    >>> ds = load_dataset("digits", n_test=200)
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    (torch.Size([1297, 1, 28, 28]), torch.Size([200, 1, 28, 28]), 10)
    >>> sorted(evaluate(CNN(ds.shape, ds.num_classes), ds.x_test, ds.y_test))
    ['accuracy', 'ce']
    >>> rgb = load_dataset("digits", size=32, channels=3)   # for ResNetV2 or a torchvision model
    >>> rgb.shape
    (3, 32, 32)
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
            xi, y_tr = _load_split(key, r, True, download, src, verify)
            x_tr = _to_float(xi)
        xi, y_te = _load_split(key, r, False, download, src, verify)
        x_te = _to_float(xi)
        desc = f"torchvision {key} from {r}" if key != "notmnist" else f"notMNIST test split from {r}"
    y_tr = None if y_tr is None else y_tr.long()
    check_dataset(Dataset(key, x_tr, y_tr, x_te, y_te.long(), list(_CLASSES[key])))  # before subsets hide it
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, seed)
    x_te, y_te = _subset(x_te, y_te.long(), n_test, seed + 1)
    x_tr = None if x_tr is None else _resize(x_tr, size, channels)
    x_te = _resize(x_te, size, channels)
    return Dataset(key, x_tr, y_tr, x_te, y_te, list(_CLASSES[key]), desc)
