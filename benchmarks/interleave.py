"""What the side-by-side step benchmarks share: their command line, the timing of a step and
the interleaved rounds (variants timed in turn, the order reversed every other round, so that
a slow spell of the machine falls on all of them alike), and the ratio of two variants."""

from __future__ import annotations

import argparse
import statistics
import time


def parser(description: str) -> argparse.ArgumentParser:
    """The options every interleaved step benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=16, help="blocks of each variant, in turn")
    p.add_argument("--steps", type=int, default=5, help="steps per block")
    p.add_argument("--warmup", type=int, default=3)
    return p


def timed(step, n: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds per step over ``n`` steps."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def interleaved(steps: dict, rounds: int, n: int, warmup: int) -> tuple[dict, dict]:
    """Per variant of ``steps`` (name -> step closure), the wall and CPU seconds per step of each
    of ``rounds`` blocks of ``n`` steps, after ``warmup`` steps of each."""
    for s in steps.values():
        for _ in range(warmup):
            s()
    names = tuple(steps)
    wall, cpu = {k: [] for k in names}, {k: [] for k in names}
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            w, c = timed(steps[k], n)
            wall[k].append(w)
            cpu[k].append(c)
    return wall, cpu


def ratio(times: dict, k: str, base: str) -> tuple[float, list[float]]:
    """Median over rounds of ``k`` / ``base``, and its quartiles."""
    pairs = [a / b for a, b in zip(times[k], times[base])]
    return statistics.median(pairs), (statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3)
