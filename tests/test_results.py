"""Tests for snnl.results: records (atomic JSON), loading and filtering, seeding, devices."""

from __future__ import annotations

import datetime
import json
import math
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from snnl.results import (PROFILES, RECORD_FIELDS, Run, device_name, git_commit, load_records,
                          read_record, resolve_device, seed_everything, write_record)


@dataclass
class Config:
    alpha: float = 10.0  # weight of the SNNL term
    layers: tuple = (1, 2)  # hidden layers regularised


def make_run(**kw):
    args = dict(experiment="table1", profile="small", dataset="digits", seed=0, config={"alpha": 10.0})
    return Run(**{**args, **kw})


def test_record_roundtrip_with_all_fields(tmp_path):
    run = make_run(config=Config(), device="cpu")
    metrics = {"test_accuracy": np.float32(0.5), "per_layer": torch.tensor([1.0, 2.0]), "best": math.inf,
               "undefined": math.nan}
    history = {"step": [0, 10], "loss": np.array([2.5, 1.25])}
    rec = run.finish(metrics, tmp_path / "records", history=history)
    back = read_record(rec["path"])
    assert set(back) == set(RECORD_FIELDS)
    assert back["experiment"] == "table1" and back["profile"] == "small" and back["dataset"] == "digits"
    assert back["seed"] == 0 and back["device"] == "cpu" and back["torch_version"] == torch.__version__
    assert back["config"] == {"alpha": 10.0, "layers": [1, 2]}
    assert back["metrics"]["test_accuracy"] == 0.5 and back["metrics"]["per_layer"] == [1.0, 2.0]
    assert back["metrics"]["best"] > 1e300 and back["metrics"]["undefined"] is None  # valid JSON, no NaN
    assert back["history"] == {"step": [0, 10], "loss": [2.5, 1.25]}
    started = datetime.datetime.fromisoformat(back["started_at"])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()) < 600
    assert 0 <= back["wall_seconds"] < 600
    assert back["git_commit"] == git_commit()  # (the tree has not changed since the import)
    assert "path" not in json.loads(open(rec["path"]).read())


def test_the_commit_is_the_code_loaded_not_a_later_checkout(monkeypatch):
    """A process that runs several experiments records the commit it imported, even if the
    checkout moves on meanwhile."""
    import dataclasses

    import snnl.results

    commit = {f.name: f for f in dataclasses.fields(snnl.results.Run)}["commit"]
    assert commit.default == snnl.results.LOADED_COMMIT and commit.default_factory is dataclasses.MISSING
    monkeypatch.setattr(snnl.results, "git_commit", lambda *a, **k: "a-later-commit")  # the checkout moves on
    assert make_run().commit == snnl.results.LOADED_COMMIT


def test_finish_without_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = make_run().finish({"acc": 1.0}, None)
    assert "path" not in rec and rec["metrics"] == {"acc": 1.0} and "history" not in rec
    assert list(tmp_path.iterdir()) == []


def test_sweep_runs_in_the_same_second_get_distinct_files(tmp_path):
    paths = {make_run(config={"alpha": a}, started_at="2025-01-01T00:00:00+00:00").finish({}, tmp_path)["path"]
             for a in (0.0, 1.0, 10.0)}
    assert len(paths) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    assert all(os.path.basename(p).startswith("table1_digits_seed0_20250101T000000Z") for p in paths)


def test_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    rec = make_run().record({"acc": 0.9})
    path = write_record(tmp_path / "r.json", rec)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(FileExistsError):  # a record is never replaced
        write_record(path, {**rec, "metrics": {"acc": 0.1}})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no .tmp- file left behind
    assert read_record(path)["metrics"] == {"acc": 0.9}  # the old record is intact

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "link", boom)
    with pytest.raises(OSError, match="disk full"):
        write_record(tmp_path / "s.json", rec)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _finish_same_second(out):
    return make_run(started_at="2025-01-01T00:00:00+00:00").finish({"acc": 0.5}, out)["path"]


def test_identical_runs_in_the_same_second_keep_every_record(tmp_path, monkeypatch):
    # concurrent processes: same experiment, config and start second
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(4) as pool:
        paths = pool.map(_finish_same_second, [tmp_path / "a"] * 8)
    assert len(set(paths)) == 8 and len(list((tmp_path / "a").glob("*.json"))) == 8
    assert all(os.path.basename(p).startswith("table1_digits_seed0_20250101T000000Z_") for p in paths)
    # even when the random part repeats, the second write takes another name instead of replacing
    import secrets
    tokens, real = iter(["aaaa", "aaaa", "bbbb"]), secrets.token_hex
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: next(tokens) if n == 4 else real(n))
    first, second = _finish_same_second(tmp_path / "b"), _finish_same_second(tmp_path / "b")
    assert first != second and len(list((tmp_path / "b").glob("*.json"))) == 2


def test_records_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = make_run().finish({"acc": 0.5}, tmp_path)["path"]
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".hidden", "-rf", "x" * 101, None])
def test_names_that_would_leave_the_folder_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="file name"):
        make_run(experiment=name)
    with pytest.raises(ValueError, match="file name"):
        make_run(dataset=name)
    assert make_run(experiment="fig3_16", dataset="mnist+notmnist").finish({}, tmp_path)["path"].startswith(
        str(tmp_path))


def test_malformed_records_are_skipped_with_a_warning_naming_them(tmp_path):
    good = make_run().finish({"acc": 0.5}, tmp_path)
    rec = {k: v for k, v in good.items() if k != "path"}
    bad = {"null.json": "null", "number.json": "3", "list.json": "[]",
           "config.json": json.dumps({**rec, "config": "alpha=1"}),
           "started.json": json.dumps({**rec, "started_at": 5}),
           "seed.json": json.dumps({**rec, "seed": "0"})}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "latin1.json").write_bytes(b'{"experiment": "caf\xe9"}')
    with pytest.warns(RuntimeWarning) as caught:
        recs = load_records(tmp_path)
    assert [r["path"] for r in recs] == [good["path"]]
    messages = " ".join(str(w.message) for w in caught)
    for name in [*bad, "latin1.json"]:
        assert str(tmp_path / name) in messages
    with pytest.raises(ValueError, match="latin1.json"):
        read_record(tmp_path / "latin1.json")


def test_missing_fields_and_bad_files_raise(tmp_path):
    rec = make_run().record({"acc": 0.9})
    for field in ("metrics", "git_commit", "seed"):
        with pytest.raises(ValueError, match=field):
            write_record(tmp_path / "x.json", {k: v for k, v in rec.items() if k != field})
    assert not list(tmp_path.iterdir())
    (tmp_path / "partial.json").write_text(json.dumps({"experiment": "x"}))
    with pytest.raises(ValueError, match="not a results record"):
        read_record(tmp_path / "partial.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        read_record(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="profile"):
        make_run(profile="huge")
    assert PROFILES == ("small", "paper")


def test_load_records_filters_and_sorts(tmp_path):
    specs = [("table1", "paper", "mnist", 0, "2025-01-03T00:00:00+00:00"),
             ("table1", "paper", "svhn", 0, "2025-01-01T00:00:00+00:00"),
             ("table1", "small", "digits", 1, "2025-01-02T00:00:00+00:00"),
             ("fig7", "paper", "cifar10", 0, "2025-01-04T00:00:00+00:00")]
    for exp, prof, ds, seed, t in specs:
        make_run(experiment=exp, profile=prof, dataset=ds, seed=seed, started_at=t).finish(
            {"acc": seed}, tmp_path / exp / prof)
    (tmp_path / "table1" / ".tmp-abc.json").write_text("{")  # an interrupted write is ignored
    assert [r["dataset"] for r in load_records(tmp_path)] == ["svhn", "digits", "mnist", "cifar10"]
    assert [r["dataset"] for r in load_records(tmp_path, "table1", profile="paper")] == ["svhn", "mnist"]
    assert [r["seed"] for r in load_records(tmp_path, "table1", dataset="digits")] == [1]
    assert load_records(tmp_path, "nothing") == [] and load_records(tmp_path / "absent") == []
    assert all(os.path.exists(r["path"]) for r in load_records(tmp_path))


def test_seed_everything_repeats_numbers():
    def draw():
        g = seed_everything(123)
        return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(),
                torch.rand(2, generator=g).tolist(), torch.nn.Linear(4, 2).weight.tolist())

    a, b = draw(), draw()
    assert a == b
    seed_everything(124)
    assert random.random() != a[0]
    with pytest.raises(TypeError):
        seed_everything("0")


def test_resolve_device():
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == expected == resolve_device().type
    assert resolve_device("cpu") == torch.device("cpu") and device_name(torch.device("cpu")) == "cpu"
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda:0")
    if not mps:
        with pytest.raises(ValueError, match="MPS"):
            resolve_device("mps")
