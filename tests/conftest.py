"""Shared test fixtures.

- ``shared_data``: a folder of real datasets as gzipped idx files
  (``MNIST/raw``, ``FashionMNIST/raw``, ``notMNIST/raw``), from the environment
  variable ``SNNL_SHARED_DATA``, else ``<repo>/../shared/data``. Tests that use it
  are skipped when it is absent.
- ``real_data_root``: one data root for the whole session into which real
  datasets are imported (decompressed) on first use.
- ``data_root``: an empty temporary data root, set as ``SNNL_DATA``.

Under pytest-xdist (``make test``: one worker process per core) each worker and the processes
its tests start get one math thread (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, unless set): a
worker's threads would only wait for the other workers' on the same cores. The tests marked
``slow`` are handed out first, the longest first (``@pytest.mark.slow(seconds=30)``), so that
none of them starts when the other workers are nearly done.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # set by pytest-xdist before it imports this file

if XDIST_WORKER:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # read by torch when it is imported, and by every subprocess


def expected_seconds(item) -> float:
    """How long a test marked ``slow(seconds=...)`` takes (5 when the mark gives no number); 0
    for the others."""
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.kwargs.get("seconds", 5))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist: the tests marked slow first, the longest first, the rest in their
    collected order (every worker collects, and must collect the same list). A long test started
    last would keep one worker busy after the others are done."""
    if XDIST_WORKER:
        items.sort(key=lambda item: -expected_seconds(item))


def shared_data_dir() -> Path:
    """Where real idx datasets are looked for: ``$SNNL_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("SNNL_SHARED_DATA") or REPO.parent / "shared" / "data").expanduser()


def shared_raw(folder: str) -> Path:
    """``<shared data>/<folder>/raw`` (e.g. ``"MNIST"``), or skip the test when it is absent."""
    raw = shared_data_dir() / folder / "raw"
    if not raw.is_dir():
        pytest.skip(f"real {folder} not available: no {raw} (set SNNL_SHARED_DATA)")
    return raw


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real data not available: no {d} (set SNNL_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def real_data_root(tmp_path_factory) -> Path:
    """A data root shared by the session; pass ``source=shared_raw(...)`` to fill it lazily."""
    return tmp_path_factory.mktemp("real-data")


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty data root, set as ``SNNL_DATA`` for the test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("SNNL_DATA", str(root))
    return root
