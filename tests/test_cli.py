"""Command line: ``python -m snnl train ...`` and ``python -m snnl data import ...``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from snnl.__main__ import main
from snnl.data import DATASETS
from snnl.results import load_records


def cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "snnl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_unknown_dataset_is_one_line_listing_the_choices():
    p = cli("train", "--dataset", "foo")
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "'foo'" in lines[0]
    for name in DATASETS:
        assert name in lines[0]


@pytest.mark.slow
def test_a_tiny_run_writes_a_record(tmp_path):
    out = tmp_path / "records"
    p = cli("train", "--dataset", "digits", "--steps", "5", "--batch-size", "32", "--alpha", "10",
            "--eval-every", "5", "--seed", "2", "--experiment", "smoke", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr
    [rec] = load_records(out, "smoke")
    assert rec["dataset"] == "digits" and rec["seed"] == 2 and rec["profile"] == "small"
    assert rec["config"]["steps"] == 5 and rec["config"]["alpha"] == 10.0
    assert f"test accuracy {rec['metrics']['test_accuracy']:.4f}" in p.stdout
    assert rec["path"] in p.stdout


@pytest.mark.parametrize("argv, match", [
    (["train", "--steps", "0"], "steps must be >= 1, got 0"),
    (["train", "--model", "vgg"], "invalid choice: 'vgg'"),
    (["train", "--distance", "l1"], "invalid choice: 'l1'"),
    (["train", "--steps", "ten"], "invalid int value: 'ten'"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "required"),
])
def test_errors_are_one_line_and_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and match in err, err


def test_data_import_of_a_folder_without_the_files_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["data", "import", "--name", "mnist", "--source", str(tmp_path / "empty"),
                 "--root", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert "train-images-idx3-ubyte" in err


def test_data_import_copies_idx_files(tmp_path, capsys):
    from conftest import shared_raw

    src = shared_raw("notMNIST")
    assert main(["data", "import", "--name", "notmnist", "--source", str(src), "--root", str(tmp_path)]) == 0
    assert (tmp_path / "notMNIST" / "raw" / "t10k-images-idx3-ubyte").stat().st_size > 0
    assert "notmnist: files in" in capsys.readouterr().out


def test_data_import_refuses_another_datasets_files_unless_told(tmp_path, capsys):
    from conftest import shared_raw

    mixed = tmp_path / "mixed"  # MNIST's training files, notMNIST's test files
    mixed.mkdir()
    for f in [*shared_raw("MNIST").glob("train-*.gz"), *shared_raw("notMNIST").glob("t10k-*.gz")]:
        (mixed / f.name).write_bytes(f.read_bytes())
    args = ["data", "import", "--name", "mnist", "--source", str(mixed), "--root", str(tmp_path / "root")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is refused: it is notMNIST's t10k-images-idx3-ubyte, not MNIST's" in err
    assert not (tmp_path / "root").exists()
    assert main(args + ["--no-verify"]) == 0  # a custom copy
    assert (tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").stat().st_size == 7_840_016


def test_regularizer_choice_reaches_the_record_and_a_wrong_one_is_one_line(tmp_path, capsys):
    """Through ``main`` in this process (``python -m snnl`` in its own is the tests above)."""
    with pytest.raises(SystemExit) as e:
        main(["train", "--regularizer", "l2"])
    bad = capsys.readouterr().err
    assert e.value.code == 2 and len(bad.splitlines()) == 1
    assert all(name in bad for name in ("snnl", "snnl-reference", "triplet"))
    out = tmp_path / "records"
    assert main(["train", "--dataset", "digits", "--steps", "3", "--batch-size", "32", "--alpha", "10",
                 "--regularizer", "snnl-reference", "--eval-every", "3", "--experiment", "ref", "--out", str(out),
                 "--no-progress"]) == 0, capsys.readouterr().err
    [rec] = load_records(out, "ref")
    assert rec["config"]["regularizer"] == "snnl-reference"


def _one_line_error(argv, capsys, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m snnl: error: "), captured.err
    return lines[0]


TINY = ["train", "--dataset", "digits", "--steps", "3", "--batch-size", "16", "--n-train", "32", "--n-test", "16",
        "--eval-every", "3", "--no-progress"]


@pytest.mark.parametrize("extra, match", [
    (["--alpha", "nan"], "alpha must be finite, got nan"),
    (["--size", "0"], "size must be >= 1"),
    (["--channels", "0"], "channels must be >= 1"),
    (["--channels", "-1"], "channels must be >= 1"),
    (["--lr-decay", "-1"], "lr_decay must be finite and > 0"),
    (["--experiment", "../../x"], "experiment name '../../x' cannot be part of a file name"),
    (["--batch-size", "64"], "batch_size 64 is larger than the training set (32 points)"),
])
def test_bad_options_are_one_line(extra, match, capsys):
    assert match in _one_line_error(TINY + extra, capsys)


def test_files_in_the_wrong_place_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    assert "is a file" in _one_line_error(TINY + ["--checkpoint-dir", str(tmp_path / "file")], capsys)
    assert "is a file" in _one_line_error(TINY + ["--out", str(tmp_path / "file")], capsys)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"\x00corrupt")
    msg = _one_line_error(TINY + ["--checkpoint-dir", str(tmp_path / "ckpt")], capsys)
    assert str(tmp_path / "ckpt" / "checkpoint.pt") in msg
    (tmp_path / "src").mkdir()
    msg = _one_line_error(["data", "import", "--name", "mnist", "--source", str(tmp_path / "src"),
                           "--root", str(tmp_path / "file")], capsys)
    assert "mnist: " in msg
    monkeypatch.setenv("SNNL_DATA", str(tmp_path / "file"))  # a data root that is a file
    assert "data not found" in _one_line_error(TINY[:1] + ["--dataset", "mnist", "--no-progress"], capsys)


def test_training_that_diverges_is_one_line_naming_alpha_and_lr(capsys):
    msg = _one_line_error(TINY + ["--alpha", "1", "--lr", "1e30"], capsys, code=1)
    assert "non-finite loss at step" in msg and "alpha 1" in msg and "lr 1e+30" in msg
