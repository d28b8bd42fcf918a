"""The benchmarks run (a smoke test at a tiny size: their numbers are not checked here)."""

from __future__ import annotations

import pytest

from benchmarks import bench_import, bench_losses, bench_regularizer, bench_train
from benchmarks.__main__ import discover


def test_every_benchmark_is_found():
    assert {"dknn", "losses", "train", "regularizer", "import"} <= set(discover())


def test_bench_train_reports_the_steps_their_ratio_and_the_floor(capsys):
    out = bench_train.main(["--batch-size", "32", "--rounds", "3", "--steps", "1", "--warmup", "1"])
    assert set(out["wall_s"]) == set(bench_train.VARIANTS) and all(v > 0 for v in out["wall_s"].values())
    assert out["ratio"] > 0 and out["floor"] > 0 and out["goal"] == bench_train.GOAL
    printed = capsys.readouterr().out
    assert "median of the rounds' ratios" in printed and "products only / baseline" in printed


def test_the_floor_step_computes_the_products_and_their_gradient():
    """The products-only step's function: |G|^2 / 4 of each Gram matrix G, gradient G x."""
    import torch

    h = [torch.randn(8, 2, 3, dtype=torch.float64, requires_grad=True), torch.randn(8, 5, dtype=torch.float64,
                                                                                  requires_grad=True)]
    out = bench_train._Products.apply(*h)
    want = torch.stack([(x.flatten(1) @ x.flatten(1).T).square().sum() / 4 for x in h])
    torch.testing.assert_close(out, want)
    assert torch.autograd.gradcheck(lambda *xs: bench_train._Products.apply(*xs), h)


def test_bench_train_rejects_an_unknown_variant():
    import pytest

    with pytest.raises(ValueError, match="baseline, entangled, products"):
        bench_train.make_step("fast", 8)


def test_bench_regularizer_times_both_ways_of_the_same_step(capsys):
    out = bench_regularizer.main(["--batch-size", "16", "--rounds", "2", "--steps", "1", "--warmup", "1"])
    assert set(out["wall_s"]) == set(bench_regularizer.VARIANTS) and out["ratio"] > 0
    assert "hooks / layerwise" in capsys.readouterr().out


def test_bench_regularizer_steps_are_the_same_computation():
    """The two variants: same model, batch and loss, so the same losses step after step."""
    hooks, layerwise = (bench_regularizer.make_step(k, 16) for k in ("hooks", "layerwise"))
    for _ in range(3):
        assert hooks() == pytest.approx(layerwise(), rel=1e-5)


@pytest.mark.slow
def test_bench_import_measures_both_imports(capsys):
    out = bench_import.main(["--rounds", "1"])
    assert out["seconds"]["snnl"] > 0 and out["max_rss"]["torch"] > 0 and out["heavy"] == []
    assert "snnl / torch" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_losses_reports_the_ratios_and_the_goals(capsys):
    out = bench_losses.main(["--sizes", "32", "--dims", "4", "--rounds", "2", "--steps", "1", "--mem-n", "300",
                             "--chunk", "64", "--no-mnist"])
    (row,) = out["speed"]
    assert all(row[k] > 0 for k in bench_losses.VARIANTS) and all(row[f"vs_{k}"] > 0 for k in ("rows", "naive", "floor"))
    assert out["memory"]["ours"]["finite"] and out["memory"]["rows"]["finite"] and out["memory"]["vs_rows"] > 0
    assert set(out["goals"]) == {"peak", "chunked_time"}  # the speed goals are at sizes not run here
    printed = capsys.readouterr().out
    assert "ours/floor" in printed and "ours / rows wall time" in printed


def test_bench_losses_steps_compute_the_same_loss():
    """ours and rows are the same loss; the naive formula is close to it here; floor is its own."""
    steps = bench_losses.make_steps(48, 6)
    ours, rows, naive = (float(steps[k]()) for k in ("ours", "rows", "naive"))
    assert ours == pytest.approx(rows, rel=1e-5) and ours == pytest.approx(naive, rel=1e-3)
