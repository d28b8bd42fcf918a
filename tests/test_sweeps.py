"""Sweeps on Optuna (:mod:`snnl.sweeps`): workers share one storage, on SQLite and on a real
PostgreSQL server; a worker killed with SIGKILL is found by its heartbeat and its run retried from
its checkpoint; SIGTERM checkpoints and queues the run again; one record per run; bad input is one
line before any training. The machinery is driven by ``tests/sweep_fake.py`` (runs of a second or
two that keep a checkpoint), Fig. 7's search by its small profile."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO

optuna = pytest.importorskip("optuna")

from snnl import sweeps  # noqa: E402
from snnl.checkpointing import Preempted, clear_stop, request_stop  # noqa: E402
from snnl.results import load_records  # noqa: E402

TESTS = Path(__file__).resolve().parent
FAKE = "sweep_fake:SWEEP"


# ---- a real PostgreSQL server ---------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    for d in ([Path(found).resolve().parent] if found else []) + sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                                                                         reverse=True):
        if (d / "pg_ctl").exists() and (d / "initdb").exists():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server started for the tests (Debian's postgresql: ``pg_ctl``; as the postgres
    user when the tests run as root, which the server refuses to be). Skipped where there is none,
    except in CI (``CI`` set), where ``.ci/run`` installs it: there a missing server fails."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL server (pg_ctl): .ci/run installs Debian's postgresql")
        pytest.skip("no PostgreSQL server here (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="snnl-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], check=True, capture_output=True, text=True)  # noqa: E731
    run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    run(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweep.db'}"
    url = request.getfixturevalue("postgres_url")
    # one database per test: a fresh study name space
    import psycopg

    name = f"t{os.getpid()}_{time.time_ns()}"
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


# ---- helpers ------------------------------------------------------------------------------------------
def _env(**kw) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "FAKE_RUNS": "6",
            "FAKE_STEP_S": "0.05", "OMP_NUM_THREADS": "1", **kw}


def _cmd(name, storage, out, ck, *extra) -> list[str]:
    return [sys.executable, "-m", "snnl", "sweep", name, "--profile", "small", "--storage", storage, "--out", str(out),
            "--checkpoints", str(ck), *extra]


def _table(out) -> dict:
    recs = load_records(out, "fake_sweep")
    keys = [r["config"]["key"] for r in recs]
    assert len(keys) == len(set(keys)), f"more than one record for a run: {sorted(keys)}"
    return {r["config"]["key"]: r["metrics"]["value"] for r in recs}


def _serial_table(tmp_path, monkeypatch, runs=6) -> dict:
    monkeypatch.setenv("FAKE_RUNS", str(runs))
    monkeypatch.setenv("FAKE_STEP_S", "0.0")
    monkeypatch.syspath_prepend(str(TESTS))
    sweeps.work(FAKE, "small", f"sqlite:///{tmp_path / 'serial.db'}", tmp_path / "serial", tmp_path / "serial-ck",
                log=lambda line: None)
    return _table(tmp_path / "serial")


def _wait(pred, timeout, what):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _running_key(ck: Path, pid: int, min_step: int = 3) -> str | None:
    """The run that process ``pid`` is in, once past ``min_step``."""
    for d in ck.glob("*"):
        started, state = d / "started", d / "state.json"
        if started.exists() and state.exists() and int(started.read_text().split()[0]) == pid:
            try:
                if json.loads(state.read_text())["step"] >= min_step:
                    return d.name
            except (ValueError, KeyError):
                pass
    return None


# ---- grid sweeps ---------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=15)
def test_two_workers_split_a_sweep_and_write_one_record_per_run(storage, tmp_path, monkeypatch):
    """Six runs of 0.4 s: a worker would have to start 2.4 s after the other to find none left
    (they start within 0.3 s of each other). --heartbeat 2: a worker with nothing left to take but
    the other's running run polls every second (every 5 s at the default heartbeat of 60 s)."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    p = subprocess.run(_cmd(FAKE, storage, out, ck, "--workers", "2", "--heartbeat", "2"),
                       env=_env(FAKE_STEP_S="0.02"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert _table(out) == _serial_table(tmp_path, monkeypatch)
    pids = {r["history"]["pid"] for r in load_records(out, "fake_sweep")}
    assert len(pids) == 2, "both workers ran some of the runs"
    monkeypatch.setenv("FAKE_RUNS", "6")
    rows = sweeps.status(FAKE, "small", storage, out)
    assert sweeps.format_status(rows).splitlines()[-1].split() == ["all", "6", "0", "0", "0"]
    assert {r["cell"] for r in rows} == {"cell0", "cell1"}
    assert sweeps.work(FAKE, "small", storage, out, ck, log=lambda line: None) == 0, "a finished sweep runs nothing"
    assert _table(out) == _serial_table(tmp_path, monkeypatch)


@pytest.mark.slow(seconds=8)
def test_a_killed_workers_run_is_retried_from_its_checkpoint(storage, tmp_path, monkeypatch):
    """Worker A is killed (SIGKILL) in its first run; worker B, started then, finds that run stale
    by its heartbeat, does the two other runs and A's from its checkpoint. A's steps take 0.1 s
    (2 s a run: it is killed well inside it), B's 0.02 s (B is not waited for)."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    cmd = _cmd(FAKE, storage, out, ck, "--heartbeat", "1")
    a = subprocess.Popen(cmd, env=_env(FAKE_RUNS="3", FAKE_STEP_S="0.1"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    b = None
    try:
        _wait(lambda: _running_key(ck, a.pid) is not None, 120, "worker A to be inside a run")
        key = _running_key(ck, a.pid)
        a.send_signal(signal.SIGKILL)
        killed_at = time.time()
        a.wait()
        b = subprocess.Popen(cmd, env=_env(FAKE_RUNS="3", FAKE_STEP_S="0.02"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        assert b.wait(timeout=300) == 0, b.stderr.read()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    assert _table(out) == _serial_table(tmp_path, monkeypatch, runs=3)
    rec = next(r for r in load_records(out, "fake_sweep") if r["config"]["key"] == key)
    assert rec["history"]["resumed_from"] >= 3, "the retried run went on from its checkpoint"
    assert rec["history"]["pid"] == b.pid
    study = optuna.load_study(study_name=sweeps.study_name(FAKE, "small"), storage=storage)
    tries = sorted((t for t in study.get_trials() if t.user_attrs.get("run") == key), key=lambda t: t.number)
    states = [t.state.name for t in tries]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 1, "failed by its heartbeat, then retried once"
    assert all(t.user_attrs.get("duplicate") for t in tries if t.state.name == "PRUNED"), "queued twice: pruned"
    retry = next(t for t in tries if t.state.name == "COMPLETE")
    retry_s = retry.datetime_start.timestamp() - killed_at
    assert 0 < retry_s < 60
    print(f"SIGKILL to retry: {retry_s:.1f} s (heartbeat 1 s, grace 2 s)")


@pytest.mark.slow
def test_sigterm_checkpoints_queues_the_run_again_and_exits_143(tmp_path, monkeypatch):
    """A worker process stopped by SIGTERM; the sweep run again (here, in this process) resumes
    the stopped run from its checkpoint and does the other one."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    storage = f"sqlite:///{tmp_path / 's.db'}"
    env = _env(FAKE_RUNS="2", FAKE_STEP_S="0.1")
    w = subprocess.Popen(_cmd(FAKE, storage, out, ck), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        _wait(lambda: _running_key(ck, w.pid) is not None, 120, "the worker to be inside a run")
        key = _running_key(ck, w.pid)
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=60) == sweeps.EXIT_PREEMPTED, w.stderr.read()
    finally:
        if w.poll() is None:
            w.kill()
    step = json.loads((ck / key / "state.json").read_text())["step"]
    assert 3 <= step < 20 and key not in _table(out), "stopped mid-run, checkpoint kept, no record"
    study = optuna.load_study(study_name=sweeps.study_name(FAKE, "small"), storage=storage)
    assert [t.state.name for t in study.get_trials() if t.user_attrs.get("run") == key] == ["FAIL", "WAITING"]
    monkeypatch.setenv("FAKE_RUNS", "2")
    monkeypatch.setenv("FAKE_STEP_S", "0.0")
    monkeypatch.syspath_prepend(str(TESTS))
    assert sweeps.work(FAKE, "small", storage, out, ck, log=lambda line: None) == 2
    assert _table(out) == _serial_table(tmp_path, monkeypatch, runs=2)
    rec = next(r for r in load_records(out, "fake_sweep") if r["config"]["key"] == key)
    assert rec["history"]["resumed_from"] == step


# ---- one record per run; a stop request inside train() ----------------------------------------------------
def test_train_twice_on_a_finished_checkpoint_writes_one_record(tmp_path, capsys):
    from snnl.__main__ import main

    args = ["train", "--dataset", "digits", "--steps", "12", "--batch-size", "32", "--eval-every", "6",
            "--out", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out
    assert len(load_records(tmp_path / "out")) == 1
    assert first == second, "the second call reports the first call's record"


def test_a_stop_request_saves_the_step_and_the_run_resumes_there(tmp_path):
    from snnl.checkpointing import load_checkpoint
    from snnl.train import TrainConfig, train

    cfg = TrainConfig(dataset="digits", steps=12, batch_size=32, eval_every=6, alpha=1.0, device="cpu")
    stop_at = lambda step, model: request_stop() if step == 5 else None  # noqa: E731
    try:
        with pytest.raises(Preempted, match="step 5 of 12"):
            train(cfg, out_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck", progress=False, callback=stop_at)
    finally:
        clear_stop()
    assert load_checkpoint(tmp_path / "ck" / "checkpoint.pt")["step"] == 5
    assert load_records(tmp_path / "out") == []
    res = train(cfg, out_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck", progress=False)
    assert res.record["history"]["resumed_from_step"] == 5
    assert len(load_records(tmp_path / "out")) == 1


# ---- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["no_such_sweep"], "unknown sweep 'no_such_sweep'"),
    (["fig7", "--profile", "screen"], "has no profile 'screen'"),
    (["fig7", "--workers", "0"], "--workers must be at least 1"),
    (["fig7", "--storage", "postgresql+psycopg://nobody@127.0.0.1:9/none"], "cannot open storage"),
    (["fig7", "--storage", "mysql://u:secret@127.0.0.1:9/x"], "cannot open storage mysql://u:***@"),
])
def test_bad_sweep_input_is_one_line_and_nothing_runs(argv, says, tmp_path, capsys):
    from snnl.__main__ import main

    t0 = time.time()
    assert main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "secret" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))
    assert time.time() - t0 < 30


# ---- Fig. 7's search at the small profile ----------------------------------------------------------------
@pytest.mark.slow(seconds=30)
def test_fig7_small_search_killed_and_run_again_finishes_without_duplicates(tmp_path):
    from snnl.experiments.regularization.fig7 import PROFILES_SEARCH, search_records, search_summary

    out, ck, db = tmp_path / "fig7", tmp_path / "ck", f"sqlite:///{tmp_path / 'x.db'}"
    cmd = _cmd("fig7", db, out, ck, "--workers", "2", "--heartbeat", "2")
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        _wait(lambda: len(search_records(out, "small")) >= 2, 600, "two finished trials")
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the parent and both workers, at once
        p.wait()
    assert len(search_records(out, "small")) < PROFILES_SEARCH["small"]["n_trials"]
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    recs = search_records(out, "small")
    runs = [r["trial"]["run"] for r in recs]
    assert len(runs) == len(set(runs)), f"a trial recorded twice: {runs}"
    n = PROFILES_SEARCH["small"]["n_trials"]
    assert n <= len(recs) <= n + 2  # 2 workers may each start one more than the last free trial
    s = search_summary(recs)
    assert s["n"] == len(recs) and all(r["trial"]["study"] == "fig7-small" for r in recs)


@pytest.mark.slow(seconds=7)
def test_sigterm_to_a_two_worker_sweep_stops_both_and_queues_their_runs(tmp_path):
    out, ck = tmp_path / "out", tmp_path / "ck"
    storage = f"sqlite:///{tmp_path / 's.db'}"
    p = subprocess.Popen(_cmd(FAKE, storage, out, ck, "--workers", "2"), env=_env(FAKE_RUNS="4", FAKE_STEP_S="0.1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: sum(1 for d in ck.glob("*") if (d / "state.json").exists()) >= 2, 120, "two runs under way")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == sweeps.EXIT_PREEMPTED, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    study = optuna.load_study(study_name=sweeps.study_name(FAKE, "small"), storage=storage)
    trials = study.get_trials()
    stopped = [t.user_attrs["run"] for t in trials if t.state.name == "FAIL" and t.user_attrs.get("preempted")]
    waiting = [t.user_attrs["run"] for t in trials if t.state.name == "WAITING"]
    assert len(stopped) == 2 and set(stopped) <= set(waiting), "both runs stopped, both queued again"
    assert not any(k in _table(out) for k in stopped)


def test_a_journal_file_storage_serves_too(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNS", "3")
    monkeypatch.setenv("FAKE_STEP_S", "0.0")
    monkeypatch.syspath_prepend(str(TESTS))
    storage = f"journal:{tmp_path / 'sweep.log'}"
    assert sweeps.work(FAKE, "small", storage, tmp_path / "out", tmp_path / "ck", log=lambda line: None) == 3
    assert _table(tmp_path / "out") == {"r0": 0, "r1": 1, "r2": 4}
    assert sweeps.status(FAKE, "small", storage, tmp_path / "out")[0]["done"] >= 1
    assert (tmp_path / "sweep.log").stat().st_size > 0


def test_a_search_on_a_new_storage_adopts_the_records_and_names_new_runs_apart(tmp_path, monkeypatch):
    # the first storage runs 3 trials, of which one leaves no record (failed, or never committed); a
    # second, new storage (another machine) adopts the 2 records and runs 3 more: their runs, seeds and
    # checkpoint folders must not take the names of the adopted ones (a new storage numbers from 0)
    import search_fake

    monkeypatch.syspath_prepend(str(TESTS))
    out, ck = tmp_path / "out", tmp_path / "ck"
    assert sweeps.work("search_fake:SEARCH", "small", f"sqlite:///{tmp_path / 'a.db'}", out, ck,
                       log=lambda line: None) == 3
    lost = next(r for r in load_records(out, "fake_search") if r["trial"]["run"] == "t000")
    Path(lost["path"]).unlink()
    adopted = {r["trial"]["run"] for r in load_records(out, "fake_search")}
    monkeypatch.setitem(search_fake.SEARCH.n_trials, "small", 5)
    assert sweeps.work("search_fake:SEARCH", "small", f"sqlite:///{tmp_path / 'b.db'}", out, ck,
                       log=lambda line: None) == 3
    recs = load_records(out, "fake_search")
    runs = [r["trial"]["run"] for r in recs]
    assert len(recs) == 5 and len(set(runs)) == 5, f"a run name taken twice: {sorted(runs)}"
    assert len({r["seed"] for r in recs}) == 5
    new = set(runs) - adopted
    assert len(new) == 3 and "t000" not in new  # nor the name of a run whose record was lost
    study = optuna.load_study(study_name=sweeps.study_name("search_fake:SEARCH", "small"),
                              storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert sum(bool(t.user_attrs.get("adopted")) for t in study.get_trials()) == 2
