"""snnl.banner: the run banner of every chapter (profile, data, device, wall time)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

import snnl
from snnl.banner import Banner, data_label, format_duration
from snnl.results import device_name, resolve_device

from conftest import REPO

SUBSTITUTE_RECORD = {"experiment": "fig3_16", "dataset": "fashion-mnist", "config": {"substitute_for": "cifar10"}}


def test_text_names_profile_data_and_resolved_device(capsys):
    b = Banner("small", ["digits", "mnist"], device="auto")
    text = str(b)
    assert "Profile: small" in text and "Data: digits, mnist" in text
    assert f"Device: {device_name(resolve_device('auto'))}" in text and "auto" not in text
    assert "Wall time: running" in text
    assert capsys.readouterr().out.strip() == text  # outside IPython: printed


def test_finish_adds_the_wall_time(capsys):
    b = Banner("paper", ["mnist"], device="cpu")
    b._t0 -= 125.4  # started 125 s ago
    b.finish()
    assert 125 <= b.wall_seconds < 135
    assert "Wall time: 2 min 0" in str(b) and "running" not in str(b)
    assert capsys.readouterr().out.splitlines()[-1] == str(b)


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.4, "59 s"), (61, "1 min 01 s"), (3725, "1 h 02 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_substitutes_are_named_as_the_records_name_them():
    result = SimpleNamespace(dataset="fashion-mnist", substitute_for="svhn")  # e.g. regularization.Figure8
    dataset = snnl.load_dataset("digits", n_train=10, n_test=10)
    b = Banner("paper", [SUBSTITUTE_RECORD, result, dataset, "mnist", "mnist"], device="cpu", show=False)
    assert b.datasets == ["fashion-mnist (substitute for cifar10)", "fashion-mnist (substitute for svhn)",
                          "digits", "mnist"]
    assert "Data: fashion-mnist (substitute for cifar10), fashion-mnist (substitute for svhn)" in str(b)
    assert data_label({"dataset": "fashion-mnist", "substitute_for": None, "config": {}}) == "fashion-mnist"


def test_finish_replaces_the_planned_data_with_the_data_used():
    b = Banner("paper", ["cifar10"], device="cpu", show=False)
    b.finish(datasets=[SUBSTITUTE_RECORD])
    assert b.datasets == ["fashion-mnist (substitute for cifar10)"] and "cifar10" in str(b)


def test_records_page_trains_nothing():
    b = Banner("records", [SUBSTITUTE_RECORD], device=None, show=False)
    assert "Profile: records" in str(b) and "Device: none" in str(b)


@pytest.mark.parametrize("profile", ["smal", "", None, "Paper"])
def test_bad_profile_is_a_clear_error(profile):
    with pytest.raises(ValueError, match="profile must be one of small, paper, records"):
        Banner(profile, ["digits"], device="cpu", show=False)


def test_bad_device_and_unnamed_data_are_clear_errors():
    with pytest.raises(ValueError, match="unknown device"):
        Banner("small", ["digits"], device="tpu0", show=False)
    with pytest.raises(TypeError, match="cannot tell the dataset"):
        Banner("small", [object()], device="cpu", show=False)


def test_html_is_an_escaped_admonition():
    b = Banner("small", ["<b>x</b>"], device=torch.device("cpu"), show=False)
    html = b._repr_html_()
    assert html.startswith('<div class="admonition note snnl-banner">') and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<strong>Device</strong> cpu" in html and "<strong>Wall time</strong> running" in html


def test_in_ipython_the_same_display_is_updated(monkeypatch):
    IPython = pytest.importorskip("IPython")
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj._repr_html_()))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", obj._repr_html_()))
        return Handle()

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", display)
    b = Banner("small", ["digits"], device="cpu")
    b.finish()
    assert [k for k, _ in shown] == ["display", "update"]
    assert "running" in shown[0][1] and re.search(r"Wall time</strong> \d+ s", shown[1][1])


def test_papermill_keeps_the_update_in_the_first_output():
    """Executed as papermill does (nbclient): the banner output of the first cell holds the final
    wall time after the last cell ran, and no second banner appears."""
    nbformat, nbclient = pytest.importorskip("nbformat"), pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = ["import snnl\nbanner = snnl.Banner('small', ['digits'], device='cpu')", "print('work')",
             "banner.finish()"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(REPO)}}).execute()
    banners = [o for c in nb.cells for o in c.outputs if "snnl-banner" in o.get("data", {}).get("text/html", "")]
    assert len(banners) == 1 and banners[0] in nb.cells[0].outputs
    assert re.search(r"Wall time: \d+ s", banners[0]["data"]["text/plain"]), banners[0]["data"]["text/plain"]
    assert nb.cells[2].outputs == []
