"""snnl.experiments.discriminative.representations (Section 3.1, App. C) at tiny sizes: the measurement is exact
and harmless to the model, the curves and records are complete, substitutes are labelled, and
Fig. 15's claim (the training-batch loss decreases) holds on the digits."""

from __future__ import annotations

import json

import matplotlib
import pytest
import torch

from snnl.data import DatasetError, load_dataset
from snnl.experiments.common import profiles as common
from snnl.experiments.discriminative import representations as rep
from snnl.experiments.common.rows import FAILS, HOLDS, INCONCLUSIVE
from snnl.losses import entanglement, soft_nearest_neighbor_loss
from snnl.models import build_model
from snnl.results import load_records, read_record

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_isometric_projection_keeps_the_loss_and_the_entanglement(distance):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 300, generator=g), torch.randint(0, 4, (40,), generator=g)
    z = rep._isometric(x)
    assert z.shape == (40, 40)
    for t in (0.05, 1.0, 300.0):
        assert soft_nearest_neighbor_loss(z, y, t, distance).item() == pytest.approx(
            soft_nearest_neighbor_loss(x.double(), y, t, distance).item(), rel=1e-6, abs=1e-9)
    assert entanglement(z, y, distance).value == pytest.approx(entanglement(x.double(), y, distance).value, rel=1e-5)
    assert rep._isometric(torch.randn(10, 4)).shape == (10, 4)  # narrow layers are left as they are


def test_layer_entanglement_measures_every_layer_and_leaves_the_model_alone():
    model = build_model("resnet", (3, 32, 32)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 3, 32, 32, generator=g), torch.arange(24) % 3
    ent = rep.layer_entanglement(model, x, y, "cosine")
    assert list(ent) == ["block6.conv1", "block6.conv2", *model.layer_names]
    assert all(v >= 0 for v in ent.values())
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BN statistics changed"
    cnn = build_model("cnn1")
    assert list(rep.layer_entanglement(cnn, torch.rand(12, 1, 28, 28), torch.arange(12) % 2)) == ["conv1", "fc1", "fc2"]


def test_figure15_curves_record_and_reuse(digits, tmp_path, monkeypatch):
    r = rep.layer_entanglement_over_training("15", data=digits, steps=20, batch_size=32, log_every=5,
                                             measure_points=3, measure_size=64, out_dir=tmp_path, progress=False)
    assert (r.figure, r.dataset, r.model, r.distance, r.substitute_for) == ("15", "digits", "cnn1", "euclidean", None)
    assert r.steps == [0, 5, 10, 15] and r.measure_steps == [0, 10, 20]
    assert list(r.batch_snnl) == list(r.temperature) == ["conv1", "fc1", "fc2"]
    assert all(len(v) == 3 for v in r.entanglement.values())
    assert r.blocks == ["conv1", "fc1", "fc2"] and r.last_block == []
    [rec] = load_records(tmp_path, "fig15")
    assert rec["config"]["steps"] == 20 and rec["config"]["figure"] == "15"
    assert rec["metrics"]["entanglement_end"] == {n: v[-1] for n, v in r.entanglement.items()}
    [row] = [i for i in rep.report_items({"fig15": [rec]}) if i["runs"]]  # the report reads this record
    assert row["item"].endswith("(digits)") and row["status"] in (HOLDS, FAILS, INCONCLUSIVE)
    back = rep.LayerEntanglement.from_record(rec)
    assert (back.entanglement, back.batch_snnl, back.measure_steps) == (r.entanglement, r.batch_snnl, r.measure_steps)
    assert "Fig. 15: cnn1 on digits, 20 steps" in r.summary()

    def no_training(*a, **k):
        raise AssertionError("trained again instead of reusing the record")

    monkeypatch.setattr(rep, "train", no_training)
    again = rep.layer_entanglement_over_training("15", data=digits, steps=20, batch_size=32, log_every=5,
                                                 measure_points=3, measure_size=64, out_dir=tmp_path, reuse=True)
    assert again.entanglement == r.entanglement


@pytest.mark.slow
def test_figure15_claim_the_training_batch_loss_decreases(digits):
    """App. C: with cross-entropy only, every hidden layer's training-batch SNNL goes down."""
    r = rep.layer_entanglement_over_training("15", data=digits, steps=100, measure_points=1, progress=False)
    for n, (start, end) in r.change("batch").items():
        assert end < start - 0.1, (n, start, end)


def test_resnet_run_gives_figures_3_and_16_and_plots(tmp_path):
    data = load_dataset("digits", n_train=64, n_test=32, size=32, channels=3)
    r = rep.layer_entanglement_over_training("16", data=data, steps=2, batch_size=16, eval_every=2,
                                             measure_points=2, measure_size=32, progress=False)
    assert r.figure == "3" and r.distance == "cosine" and r.model == "resnet"
    assert r.last_block == ["block6.conv1", "block6.conv2", "block6"]
    assert r.blocks == ["block1", "block2", "block3", "block4", "block5", "block6", "pool"]
    fig = rep.plot_figure3_16(r)
    assert [len(ax.lines) for ax in fig.axes] == [3, 7]
    assert "Fig. 3" in fig.axes[0].get_title()
    fig15 = rep.plot_figure15(r)
    assert len(fig15.axes[0].lines) == 7 and len(fig15.axes[1].lines) == 9
    with pytest.raises(ValueError, match="no curve for layer"):
        rep.plot_over_training(r, ["fc9"])


def test_a_missing_cifar10_is_replaced_and_labelled(monkeypatch, tmp_path):
    calls = []

    def fake_load(name, **kw):
        calls.append((name, kw.get("size"), kw.get("channels")))
        if name == "cifar10":
            raise DatasetError("cifar10: data not found")
        return load_dataset("digits", n_train=48, n_test=24, size=kw.get("size"), channels=kw.get("channels"))

    monkeypatch.setattr(common, "load_dataset", fake_load)  # load_or_substitute's
    with pytest.warns(UserWarning, match="substitute for CIFAR-10"):
        r = rep.layer_entanglement_over_training("3", dataset="cifar10", steps=1, batch_size=16, measure_points=1,
                                                 measure_size=16, out_dir=tmp_path, progress=False)
    assert calls == [("cifar10", 32, 3), ("fashion-mnist", 32, 3)]
    assert r.substitute_for == "cifar10" and "Fashion-MNIST" in r.data_note
    assert "(substitute for cifar10)" in r.summary()
    [rec] = load_records(tmp_path, "fig3_16")
    assert rec["config"]["substitute_for"] == "cifar10" and "substitute" in rec["config"]["data_note"]
    ran = [i for i in rep.report_items({"fig3_16": [rec]}) if i["runs"]]  # Figs. 16 and 3 of the record
    assert [i["section"] for i in ran] == ["Fig. 16", "Fig. 3"] and all(i["status"] in (HOLDS, FAILS, INCONCLUSIVE) for i in ran)
    with pytest.raises(DatasetError):
        rep.load_or_substitute("cifar10", substitute=False)


@pytest.mark.parametrize("kw, match", [
    (dict(figure="4"), "unknown figure '4'; choose one of: 15, 3, 16"),
    (dict(profile="huge"), "unknown profile 'huge'; choose one of: small, paper"),
    (dict(measure_split="val"), "measure_split must be"),
    (dict(measure_points=0), "measure_points must be"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        rep.layer_entanglement_over_training(**kw)


def test_cli_writes_a_record_and_refuses_an_unknown_figure(tmp_path, capsys):
    """2 steps: the entanglement of every layer is measured at 3 steps (0, 1, 2), not at the
    profile's 7 points (each a temperature search per layer on 256 images)."""
    assert rep.main(["--figure", "15", "--steps", "2", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("fig15_digits_*.json")
    rec = read_record(path)
    assert rec["config"]["steps"] == 2 and rec["profile"] == "small" and str(path) in capsys.readouterr().out
    assert rec["history"]["measure_step"] == [0, 1, 2]
    with pytest.raises(SystemExit) as e:
        rep.main(["--figure", "7", "--out", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_killed_run_keeps_its_measurements_and_resumes_to_the_same_curves(digits, tmp_path, monkeypatch):
    """A crash after the step-10 measurement leaves steps 0 and 10 in the checkpoint folder; the run
    started again finishes with the curves of a run never stopped."""
    kw = dict(data=digits, steps=20, batch_size=32, log_every=5, measure_points=3, measure_size=64, progress=False)
    whole = rep.layer_entanglement_over_training("15", **kw)
    real = rep.layer_entanglement

    def crash_at_20(model, x, y, distance):
        if crash_at_20.calls == 2:
            raise KeyboardInterrupt("killed")
        crash_at_20.calls += 1
        return real(model, x, y, distance)

    crash_at_20.calls = 0
    monkeypatch.setattr(rep, "layer_entanglement", crash_at_20)
    with pytest.raises(KeyboardInterrupt):
        rep.layer_entanglement_over_training("15", checkpoint_dir=tmp_path / "ck", **kw)
    kept = json.loads((tmp_path / "ck" / "entanglement.json").read_text())
    assert sorted(map(int, kept)) == [0, 10]
    assert kept["10"] == pytest.approx({n: v[1] for n, v in whole.entanglement.items()})
    monkeypatch.setattr(rep, "layer_entanglement", real)
    again = rep.layer_entanglement_over_training("15", checkpoint_dir=tmp_path / "ck", **kw)
    assert again.measure_steps == [0, 10, 20]
    for n, v in whole.entanglement.items():
        assert again.entanglement[n] == pytest.approx(v, rel=1e-5)


def test_a_missing_cifar10_takes_the_substitute_settings(monkeypatch):
    p = rep.PROFILES_FIG3_16["paper"]["substitute"]
    assert (p["steps"], p["batch_size"], p["measure_points"]) == (10000, 64, 21)
    assert p["lr"] == pytest.approx(0.4 * 64 / 256)
    assert 0.01 ** (p["steps"] / p["decay_steps"] / 106) == pytest.approx(0.01, rel=0.05)  # 1% at the end, as the paper
