"""The benchmarks run (a smoke test at a tiny size: their numbers are not checked here)."""

from __future__ import annotations

from benchmarks import bench_train
from benchmarks.__main__ import discover


def test_every_benchmark_is_found():
    assert {"dknn", "losses", "train"} <= set(discover())


def test_bench_train_reports_both_steps_and_their_ratio(capsys):
    out = bench_train.main(["--batch-size", "32", "--rounds", "3", "--steps", "1", "--warmup", "1"])
    assert set(out["wall_s"]) == {"baseline", "entangled"} and all(v > 0 for v in out["wall_s"].values())
    assert out["ratio"] > 0 and out["goal"] == bench_train.GOAL
    assert "median of the rounds' ratios" in capsys.readouterr().out
