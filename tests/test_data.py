"""Tests for snnl.data: the embedded digits, real idx datasets, torchvision on-disk formats
(SVHN .mat, CIFAR-10 pickles) written by the tests, clear one-line errors, and options."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import scipy.io
import torch

from conftest import shared_raw
from snnl.data import DATASETS, DatasetError, data_root, import_idx, load_dataset

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def write_idx(folder, n_train=6, n_test=4, size=28, seed=0):
    """Tiny MNIST-format files (plain, uncompressed) in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, n, size, size) + x.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + y.tobytes())
        out[split] = (x, y)
    return out


# ---- digits (embedded) --------------------------------------------------------------------------
def test_digits_shapes_ranges_and_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1297, 1, 28, 28) and ds.x_test.shape == (500, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert ds.num_classes == 10 and ds.classes == [str(i) for i in range(10)] and ds.shape == (1, 28, 28)
    # stratified split: every class is in both splits with ~ its share of the 1,797 digits
    counts = torch.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 45 and counts.max() <= 55
    assert set(ds.y_train.tolist()) == set(range(10))
    # the two splits share no image
    tr = {bytes(x.numpy().tobytes()) for x in ds.x_train}
    assert not any(bytes(x.numpy().tobytes()) in tr for x in ds.x_test)


def test_digits_deterministic_and_matches_sklearn():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    from sklearn.datasets import load_digits

    # downsampling our 28x28 image back to 8x8 approximately recovers a digit of sklearn's set
    d = load_digits()
    small = torch.nn.functional.adaptive_avg_pool2d(a.x_test[:5], 8).flatten(1).numpy()
    ref = d.images.reshape(len(d.images), -1) / 16.0
    for s, y in zip(small, a.y_test[:5].tolist()):
        nearest = np.argmin(((ref - s) ** 2).sum(1))
        assert d.target[nearest] == y


# ---- names and errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MNIST", "Fashion_MNIST", "FashionMNIST", "CIFAR-10", "notMNIST"])
def test_name_aliases(name, data_root):
    with pytest.raises(DatasetError) as e:  # found the name; the data is what is missing
        load_dataset(name, download=False)
    assert "unknown dataset" not in str(e.value)


def test_unknown_name_is_one_line_listing_valid_names():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet")
    msg = one_line(e)
    assert "imagenet" in msg and all(n in msg for n in DATASETS)


@pytest.mark.parametrize("name,folder,files", [
    ("mnist", "MNIST/raw", IDX),
    ("fashion-mnist", "FashionMNIST/raw", IDX),
    ("notmnist", "notMNIST/raw", IDX[2:]),
    ("svhn", "SVHN", ("train_32x32.mat", "test_32x32.mat")),
    ("cifar10", "cifar-10-batches-py", ("data_batch_1", "data_batch_5", "test_batch", "batches.meta")),
])
def test_missing_data_offline_is_one_line_naming_folder_and_files(name, folder, files, data_root):
    with pytest.raises(DatasetError) as e:
        load_dataset(name, download=False)
    msg = one_line(e)
    assert msg.startswith(name) and str(data_root / folder) in msg
    assert all(f in msg for f in files)
    assert not (data_root / folder).exists() or not any((data_root / folder).iterdir())


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("SNNL_DATA", raising=False)
    assert data_root() == data_root(None) and data_root().name == "data"
    monkeypatch.setenv("SNNL_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


def test_corrupt_idx_file_is_one_line(data_root):
    raw = data_root / "MNIST" / "raw"
    write_idx(raw)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", download=False)
    msg = one_line(e)
    assert msg.startswith("mnist: cannot read") and str(raw) in msg


def test_truncated_idx_file_is_one_line(data_root):
    raw = data_root / "MNIST" / "raw"
    write_idx(raw)
    with open(raw / "train-images-idx3-ubyte", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", download=False)
    assert "cannot read" in one_line(e)


def test_tiny_idx_files_load_exactly(data_root):
    arrays = write_idx(data_root / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", download=False)
    x, y = arrays["train"]
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.classes[0] == "T-shirt/top"
    torch.testing.assert_close(ds.x_train[:, 0], torch.from_numpy(x).float() / 255)
    assert ds.y_train.tolist() == y.tolist() and ds.y_test.tolist() == arrays["t10k"][1].tolist()


def test_import_idx_from_gz_and_bad_gz(tmp_path, data_root):
    src = tmp_path / "src"
    arrays = write_idx(src)
    for f in IDX:
        (src / (f + ".gz")).write_bytes(gzip.compress((src / f).read_bytes()))
        (src / f).unlink()
    ds = load_dataset("mnist", source=src, download=False, verify=False)  # made-up files: a custom copy
    assert ds.y_test.tolist() == arrays["t10k"][1].tolist()
    assert sorted(p.name for p in (data_root / "MNIST" / "raw").iterdir()) == sorted(IDX)
    # a broken archive: one line, and no half-written file left behind
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError) as e:
        import_idx("notmnist", src, tmp_path / "other")
    assert "cannot decompress" in one_line(e)
    assert not (tmp_path / "other").exists()  # no half-written file, no empty folders left behind
    with pytest.raises(DatasetError, match="only handles idx"):
        import_idx("svhn", src)


# ---- real data (shared folder) ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,folder,mean,std", [
    ("mnist", "MNIST", 0.1307, 0.3081),  # the well-known normalisation constants
    ("fashion-mnist", "FashionMNIST", 0.2860, 0.3530),
])
def test_real_idx_datasets(name, folder, mean, std, real_data_root):
    ds = load_dataset(name, real_data_root, source=shared_raw(folder), download=False)
    assert len(ds.x_train) == 60000 and len(ds.x_test) == 10000 and ds.shape == (1, 28, 28)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    assert abs(ds.x_train.mean().item() - mean) < 1e-3 and abs(ds.x_train.std().item() - std) < 1e-3
    assert torch.bincount(ds.y_train, minlength=10).min() >= 5000
    assert torch.bincount(ds.y_test, minlength=10).tolist() == (
        [1000] * 10 if name == "fashion-mnist" else [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_real_notmnist_test_split(real_data_root):
    ds = load_dataset("notmnist", real_data_root, source=shared_raw("notMNIST"), download=False)
    assert ds.x_train is None and ds.y_train is None
    assert ds.x_test.shape == (10000, 1, 28, 28) and ds.classes == list("ABCDEFGHIJ")
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert 0 <= ds.x_test.min() and ds.x_test.max() == 1


# ---- SVHN and CIFAR-10 in torchvision's on-disk format ------------------------------------------
def write_svhn(root, n=(7, 5), seed=0):
    rng = np.random.default_rng(seed)
    (root / "SVHN").mkdir(parents=True)
    out = {}
    for split, k in zip(("train", "test"), n):
        X = rng.integers(0, 256, (32, 32, 3, k), dtype=np.uint8)
        y = rng.integers(1, 11, (k, 1)).astype(np.uint8)  # 10 means digit 0
        y[0, 0] = 10
        scipy.io.savemat(root / "SVHN" / f"{split}_32x32.mat", {"X": X, "y": y})
        out[split] = (X, y)
    return out


def test_svhn_mat_files(data_root):
    arrays = write_svhn(data_root)
    ds = load_dataset("svhn", download=False)
    X, y = arrays["train"]
    assert ds.x_train.shape == (7, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    assert ds.x_train.is_contiguous()
    expected = torch.from_numpy(X).permute(3, 2, 0, 1).float() / 255  # (H, W, C, N) -> (N, C, H, W)
    torch.testing.assert_close(ds.x_train, expected)
    assert ds.y_train.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]] and ds.y_train[0] == 0
    assert ds.y_train.max() <= 9


def test_svhn_corrupt_file_is_one_line(data_root):
    write_svhn(data_root)
    (data_root / "SVHN" / "test_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as e:
        load_dataset("svhn", download=False)
    assert one_line(e).startswith("svhn: cannot read")


def write_cifar(root, per_batch=3, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        out[name] = (data, labels)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                     "horse", "ship", "truck"]}, f)
    return out


def test_cifar10_pickled_batches(data_root):
    arrays = write_cifar(data_root)
    ds = load_dataset("cifar10", download=False)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    data = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = torch.from_numpy(data).reshape(-1, 3, 32, 32).float() / 255  # rows are R, G, B planes
    torch.testing.assert_close(ds.x_train, expected)
    assert ds.y_train.tolist() == sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.y_test.tolist() == arrays["test_batch"][1]
    assert ds.classes[0] == "airplane" and ds.num_classes == 10


def test_cifar10_missing_one_batch(data_root):
    write_cifar(data_root)
    (data_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", download=False)
    assert "data_batch_3" in one_line(e)


# ---- options --------------------------------------------------------------------------------------
def test_subsets_are_seeded_and_keep_labels_with_images():
    full = load_dataset("digits")
    a = load_dataset("digits", n_train=100, n_test=50, seed=3)
    b = load_dataset("digits", n_train=100, n_test=50, seed=3)
    c = load_dataset("digits", n_train=100, n_test=50, seed=4)
    assert len(a.x_train) == 100 and len(a.y_test) == 50
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    lookup = {bytes(x.numpy().tobytes()): int(y) for x, y in zip(full.x_train, full.y_train)}
    assert all(lookup[bytes(x.numpy().tobytes())] == int(y) for x, y in zip(a.x_train, a.y_train))
    assert len({bytes(x.numpy().tobytes()) for x in a.x_train}) == 100  # without replacement
    assert len(load_dataset("digits", n_train=10**6).x_train) == 1297
    with pytest.raises(ValueError, match="positive"):
        load_dataset("digits", n_train=0)


def test_resize_pad_and_channels():
    ds = load_dataset("digits", n_train=8, n_test=8)
    big = load_dataset("digits", n_train=8, n_test=8, size=32, channels=3)
    assert big.x_train.shape == (8, 3, 32, 32) and big.shape == (3, 32, 32)
    # 28 -> 32 pads two zero pixels on each side; the three channels are copies
    torch.testing.assert_close(big.x_train[:, 1, 2:30, 2:30], ds.x_train[:, 0])
    assert big.x_train[:, :, :2].abs().sum() == 0 and big.x_train[:, :, :, 30:].abs().sum() == 0
    assert torch.equal(big.x_train[:, 0], big.x_train[:, 2])
    small = load_dataset("digits", n_train=8, n_test=8, size=14)
    assert small.x_test.shape == (8, 1, 14, 14) and 0 <= small.x_test.min() and small.x_test.max() <= 1
    torch.testing.assert_close(small.x_test.mean(), ds.x_test.mean(), atol=0.01, rtol=0)


def test_channels_to_one_averages_and_bad_conversion(data_root):
    write_cifar(data_root)
    rgb = load_dataset("cifar10", download=False)
    gray = load_dataset("cifar10", download=False, channels=1)
    torch.testing.assert_close(gray.x_train[:, 0], rgb.x_train.mean(1))
    with pytest.raises(DatasetError, match="channels"):
        load_dataset("cifar10", download=False, channels=2)


# ---- what is imported and loaded is checked -------------------------------------------------------
def test_import_refuses_an_empty_gz_and_a_later_import_replaces_a_bad_file(tmp_path):
    src, good, root = tmp_path / "src", tmp_path / "good", tmp_path / "root"
    arrays = write_idx(good)
    src.mkdir()
    for f in IDX:
        (src / (f + ".gz")).write_bytes(gzip.compress(b"" if f == "t10k-images-idx3-ubyte" else (good / f).read_bytes()))
    with pytest.raises(DatasetError) as e:
        import_idx("mnist", src, root, verify=False)
    assert "t10k-images-idx3-ubyte.gz is not a valid idx file" in one_line(e)
    raw = root / "MNIST" / "raw"
    assert not root.exists()  # not one file of a refused import (not even the good ones), nor its folders
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"")  # a bad file from before: replaced by a good import
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 9) + b"\x01")  # header says 9
    import_idx("mnist", good, root, verify=False)
    ds = load_dataset("mnist", root=root, download=False)
    assert ds.x_test.shape == (4, 1, 28, 28) and ds.y_test.tolist() == arrays["t10k"][1].tolist()


@pytest.mark.parametrize("case, match", [
    ("fewer labels", "the training split has 6 images but 5 labels"),
    ("label 10", "labels must be integers in 0..9, got 0..10"),
    ("test size", "training images are (1, 28, 28) but test images are (1, 20, 20)"),
])
def test_inconsistent_splits_are_one_line(data_root, case, match):
    raw = data_root / "MNIST" / "raw"
    arrays = write_idx(raw)
    x, y = arrays["train"]
    if case == "fewer labels":
        (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 5) + y[:5].tobytes())
    elif case == "label 10":
        y = y.copy()
        y[0] = 10
        (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 6) + y.tobytes())
    else:
        write_idx(tmp := data_root / "small", size=20)
        for f in IDX[2:]:
            (raw / f).write_bytes((tmp / f).read_bytes())
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", download=False)
    assert one_line(e).startswith("mnist: ") and match in str(e.value)


@pytest.mark.parametrize("kw", [dict(size=0), dict(channels=0), dict(channels=-1), dict(n_test=0), dict(size=2.5)])
def test_bad_sizes_and_channels_are_refused(kw):
    with pytest.raises(ValueError, match="must be a positive integer"):
        load_dataset("digits", **kw)


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    import snnl.data as sd

    def offline(name, root, train, download):  # as torchvision does: make the folders, then fail
        if download:
            (root / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
            raise OSError("network unreachable")
        raise AssertionError("not reached")

    monkeypatch.setattr(sd, "_read_torchvision", offline)
    root = tmp_path / "fresh" / "data"
    with pytest.raises(DatasetError, match="download failed: OSError: network unreachable"):
        load_dataset("mnist", root=root)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()  # a data root that existed stays
    with pytest.raises(DatasetError):
        load_dataset("mnist", root=tmp_path / "kept")
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"] and list((tmp_path / "kept").iterdir()) == []


def test_an_unreadable_data_folder_is_one_line(tmp_path, monkeypatch):
    import pathlib

    real = pathlib.Path.is_file

    def denied(self):
        if str(self).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "is_file", denied)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root=tmp_path, download=False)
    assert "cannot read the data folder" in one_line(e) and "Permission denied" in str(e.value)


# ---- the content of idx files: known digests, so that datasets cannot be mixed up ---------------
def gzip_folder(folder, files=IDX):
    """Each file of ``folder`` replaced by its ``.gz``."""
    for f in files:
        (folder / (f + ".gz")).write_bytes(gzip.compress((folder / f).read_bytes()))
        (folder / f).unlink()


def known(monkeypatch, name, folder, files=IDX):
    """Make the (made-up) files of ``folder`` the known files of ``name``: the digest table says so."""
    from snnl.idx import MD5, md5_of

    for f in files:
        path = folder / f if (folder / f).exists() else folder / (f + ".gz")
        monkeypatch.setitem(MD5[name], f, md5_of(path) if path.suffix != ".gz" else
                            __import__("hashlib").md5(gzip.decompress(path.read_bytes())).hexdigest())


def test_the_digest_table_holds_the_known_files():
    from snnl.idx import MD5, whose

    assert MD5["fashion-mnist"]["train-images-idx3-ubyte"] == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
    assert MD5["notmnist"].keys() == set(IDX[2:]) and MD5["mnist"].keys() == set(IDX)
    assert len({d for files in MD5.values() for d in files.values()}) == 10  # all distinct
    assert whose("27ae3e4e09519cfbb04c329615203637") == ("mnist", "t10k-labels-idx1-ubyte")
    assert whose("0" * 32) is None


def test_importing_another_datasets_files_is_refused_in_one_line_naming_them(tmp_path, monkeypatch):
    src, root = tmp_path / "MNIST" / "raw", tmp_path / "root"
    write_idx(src)
    known(monkeypatch, "mnist", src)  # these files are MNIST's
    gzip_folder(src)
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", root, source=src, download=False)
    msg = one_line(e)
    assert msg.startswith("fashion-mnist: ") and f"{src / 'train-images-idx3-ubyte.gz'} is refused" in msg
    assert "it is MNIST's train-images-idx3-ubyte, not Fashion-MNIST's train-images-idx3-ubyte" in msg
    assert "import it as 'mnist'" in msg
    assert not root.exists()  # nothing of the refused import stays: every later load would get it
    with pytest.raises(DatasetError, match="data not found"):
        load_dataset("fashion-mnist", root, download=False)
    assert load_dataset("mnist", root, source=src, download=False).x_train.shape == (6, 1, 28, 28)  # as MNIST: fine
    # MNIST's training files with notMNIST's test files: refused, naming notMNIST, and the good
    # training files are not imported either
    nm = tmp_path / "notMNIST" / "raw"
    write_idx(nm, seed=1)
    known(monkeypatch, "notmnist", nm, IDX[2:])
    for f in IDX[2:]:
        (src / (f + ".gz")).write_bytes(gzip.compress((nm / f).read_bytes()))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz is refused: it is notMNIST's "
                                           r"t10k-images-idx3-ubyte, not MNIST's"):
        import_idx("mnist", src, tmp_path / "root2")
    assert not (tmp_path / "root2").exists()


def test_an_unknown_content_is_refused_unless_verify_is_off(tmp_path):
    src, root = tmp_path / "src", tmp_path / "root"
    arrays = write_idx(src)
    with pytest.raises(DatasetError) as e:
        import_idx("fashion-mnist", src, root)
    msg = one_line(e)
    assert "its content is not Fashion-MNIST's train-images-idx3-ubyte (md5 " in msg
    assert "expected f4a8712d7a061bf5bd6d2ca38dc4d50a); pass verify=False" in msg and not root.exists()
    assert import_idx("fashion-mnist", src, root, verify=False) == root / "FashionMNIST" / "raw"
    ds = load_dataset("fashion-mnist", root, download=False)
    assert ds.y_train.tolist() == arrays["train"][1].tolist()


def test_a_later_import_replaces_another_datasets_files_in_the_data_root(tmp_path, monkeypatch):
    mnist, fashion, root = tmp_path / "m", tmp_path / "f", tmp_path / "root"
    write_idx(mnist, seed=0)
    arrays = write_idx(fashion, seed=1)
    known(monkeypatch, "mnist", mnist)
    known(monkeypatch, "fashion-mnist", fashion)
    raw = root / "FashionMNIST" / "raw"
    import_idx("fashion-mnist", mnist, root, verify=False)  # MNIST's files where Fashion-MNIST's belong
    with pytest.raises(DatasetError) as e:  # every load says so (the labels file's digest)
        load_dataset("fashion-mnist", root, download=False)
    assert one_line(e) == (f"fashion-mnist: the files in {raw} are not Fashion-MNIST's: train-labels-idx1-ubyte is "
                           f"MNIST's train-labels-idx1-ubyte; remove them and import Fashion-MNIST's, or pass "
                           f"verify=False (--no-verify on the command line) for a custom copy")
    assert load_dataset("fashion-mnist", root, download=False, verify=False).y_train.shape == (6,)
    import_idx("fashion-mnist", fashion, root)  # the right files replace them
    assert load_dataset("fashion-mnist", root, download=False).y_test.tolist() == arrays["t10k"][1].tolist()


@pytest.mark.parametrize("verify", [True, False])
def test_gz_files_in_the_data_root_are_decompressed_and_checked(data_root, monkeypatch, verify):
    raw = data_root / "FashionMNIST" / "raw"
    arrays = write_idx(raw)
    if verify:
        known(monkeypatch, "fashion-mnist", raw)
    gzip_folder(raw)
    ds = load_dataset("fashion-mnist", download=False, verify=verify)  # torchvision's layout, still gzipped
    assert ds.y_test.tolist() == arrays["t10k"][1].tolist() and ds.x_train.shape == (6, 1, 28, 28)
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX + tuple(f + ".gz" for f in IDX))


def test_gz_files_of_another_dataset_in_the_data_root_are_refused(data_root, monkeypatch):
    raw = data_root / "FashionMNIST" / "raw"
    write_idx(raw)
    known(monkeypatch, "mnist", raw)
    gzip_folder(raw)
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", download=False)
    assert "train-images-idx3-ubyte.gz is refused: it is MNIST's train-images-idx3-ubyte" in one_line(e)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f + ".gz" for f in IDX)  # nothing decompressed


def test_some_gz_files_missing_says_what_to_do(data_root):
    raw = data_root / "FashionMNIST" / "raw"
    write_idx(raw)
    gzip_folder(raw, IDX[:3])
    (raw / IDX[3]).unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", download=False)
    msg = one_line(e)
    assert f"data not found in {raw}; expected files: {', '.join(IDX)} (or each .gz)" in msg
    assert "pass source= a folder of them (.gz or not) or set SNNL_DATA" in msg


def test_real_mnist_offered_as_fashion_mnist_is_refused(tmp_path):
    src = shared_raw("MNIST")
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", tmp_path, source=src, download=False)
    assert "is refused: it is MNIST's train-images-idx3-ubyte, not Fashion-MNIST's" in one_line(e)
    assert not tmp_path.joinpath("FashionMNIST").exists()
