"""The benchmarks run (a smoke test at a tiny size: their numbers are not checked here)."""

from __future__ import annotations

from benchmarks import bench_train
from benchmarks.__main__ import discover


def test_every_benchmark_is_found():
    assert {"dknn", "losses", "train"} <= set(discover())


def test_bench_train_reports_the_steps_their_ratio_and_the_floor(capsys):
    out = bench_train.main(["--batch-size", "32", "--rounds", "3", "--steps", "1", "--warmup", "1"])
    assert set(out["wall_s"]) == set(bench_train.VARIANTS) and all(v > 0 for v in out["wall_s"].values())
    assert out["ratio"] > 0 and out["floor"] > 0 and out["goal"] == bench_train.GOAL
    printed = capsys.readouterr().out
    assert "median of the rounds' ratios" in printed and "products only / baseline" in printed


def test_the_floor_step_computes_the_products_and_their_gradient():
    """The products-only step's function: |G|^2 / 4 of each Gram matrix G, gradient G x."""
    import torch

    torch.manual_seed(0)
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
