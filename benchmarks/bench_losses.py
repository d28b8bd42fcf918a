"""Soft nearest neighbor loss speed and memory (paper Section 2, Eq. 1).

Speed: forward + backward on CPU in float32 of
  * ours  -- ``snnl.soft_nearest_neighbor_loss`` (the fused function of ``snnl.fused``),
  * rows  -- the same loss by the per-class shifted rows it replaced (``fused=False``),
  * naive -- ``snnl.soft_nearest_neighbor_loss_reference`` (the authors' formula, autograd),
  * floor -- ``(x @ x.T).sum()``: one b x b product forward and two backward, the matrix
    products alone.
They run in interleaved rounds (each variant a block of steps in turn, the order reversed
every other round), and each ratio is the median over the rounds of that round's ratio, so
that other load on the machine falls on all of them alike.
Goals: B = 4096, D = 128: ours <= 1.3 x floor; B = 256, D = 128: ours <= 0.7 x naive.

Memory: ``chunk_size`` on 30,000 x 32 points with gradients, fused and the rows path each in a
fresh process: peak resident memory (``VmHWM``, else ``ru_maxrss``) against the goal <= 1 GB
(a dense b x b float32 matrix alone would take 3.6 GB), and the fused one no slower than the
rows path; then the value of the whole MNIST training set (60,000 x 784 pixels, no
gradient, chunked), its wall time and peak memory.

    python -m benchmarks.bench_losses [--sizes 256,1024,4096 --dims 128,512 --no-mnist ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from benchmarks.interleave import interleaved, ratio
from snnl.losses import _soft_nearest_neighbor_loss, soft_nearest_neighbor_loss_reference

GOAL_FLOOR, GOAL_NAIVE, GOAL_PEAK_GB = 1.3, 0.7, 1.0  # at (4096, 128), (256, 128); memory at 30,000 x 32
GOAL_FLOOR_AT, GOAL_NAIVE_AT = (4096, 128), (256, 128)
TEMPERATURE = 10.0  # any T at which the fused function holds: its cost does not depend on it
CLASSES = 10
VARIANTS = ("ours", "rows", "naive", "floor")


def _rounds(b: int) -> tuple[int, int]:
    """(rounds, steps per block) by batch size: about the same time for each size."""
    return {256: (15, 20), 1024: (9, 3)}.get(b, (7, 1))


def make_steps(b: int, d: int, seed: int = 0) -> dict:
    """A forward + backward step of each variant on one batch; each returns its loss."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g).requires_grad_(True)
    y = torch.randint(0, CLASSES, (b,), generator=g)
    fns = {
        "ours": lambda: _soft_nearest_neighbor_loss(x, y, TEMPERATURE),
        "rows": lambda: _soft_nearest_neighbor_loss(x, y, TEMPERATURE, fused=False),
        "naive": lambda: soft_nearest_neighbor_loss_reference(x, y, TEMPERATURE),
        "floor": lambda: (x @ x.T).sum(),
    }

    def step(f):
        def run():
            x.grad = None
            value = f()
            value.backward()
            return value.detach()
        return run

    return {k: step(f) for k, f in fns.items()}


def time_speed(b: int, d: int, rounds: int, steps: int, variants=VARIANTS) -> dict:
    """Per variant the median seconds per step, and the median ratios of ours to the others."""
    fns = make_steps(b, d)
    wall, _ = interleaved({k: fns[k] for k in variants}, rounds, steps, warmup=1)
    out = {k: sorted(v)[len(v) // 2] for k, v in wall.items()}
    for base in variants[1:]:
        out[f"vs_{base}"], _ = ratio(wall, "ours", base)
    return out


# --- memory: each measurement in a fresh interpreter, so that its peak is its own ------------------
_CHILD = r"""
import json, re, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from snnl.losses import _soft_nearest_neighbor_loss
args = json.loads(sys.argv[1])

def peak_kib():  # this process's peak RSS; VmHWM starts afresh at exec, ru_maxrss may not
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

base = peak_kib()
if args["task"] == "chunked":
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args["n"], args["d"], generator=g).requires_grad_(True)
    y = torch.randint(0, 10, (args["n"],), generator=g)
    t0 = time.perf_counter()
    value = _soft_nearest_neighbor_loss(x, y, args["temperature"], chunk_size=args["chunk"], fused=args["fused"])
    value.backward()
    ok = bool(torch.isfinite(x.grad).all())
else:
    from snnl.data import load_dataset
    ds = load_dataset("mnist", source=args["source"], download=False)
    x, y = ds.x_train.reshape(len(ds.x_train), -1), ds.y_train
    base = peak_kib()
    t0 = time.perf_counter()
    with torch.no_grad():
        value = _soft_nearest_neighbor_loss(x, y, args["temperature"], chunk_size=args["chunk"])
    ok = bool(torch.isfinite(value))
wall = time.perf_counter() - t0
peak = peak_kib()
print(json.dumps({"value": float(value), "wall_s": wall, "peak_gb": peak / 2**20,
                  "before_gb": base / 2**20, "finite": ok, "n": len(x), "d": x[0].numel()}))
"""


def measure_in_subprocess(args: dict, threads: int) -> dict:
    """Run one memory measurement in a fresh interpreter; its JSON result (or the error)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args), str(threads)],
                         capture_output=True, text=True, cwd=os.getcwd())
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(row: dict, key: str, fmt: str) -> str:
    return f"{row[key]:{fmt}}" if key in row else "-"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,1024,4096", help="batch sizes B, comma separated ('' = none)")
    p.add_argument("--dims", default="128,512", help="dimensions D, comma separated")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per size (default: 15/9/7)")
    p.add_argument("--steps", type=int, default=None, help="steps per block (default: 20/3/1)")
    p.add_argument("--no-naive-above", type=int, default=1024,
                   help="leave the (slow) naive formula out above this B")
    p.add_argument("--mem-n", type=int, default=30_000, help="points for the chunked memory test")
    p.add_argument("--chunk", type=int, default=1024, help="chunk_size for the memory tests")
    p.add_argument("--no-rows-memory", action="store_true", help="measure the fused chunked run only")
    p.add_argument("--no-mnist", action="store_true", help="skip the whole-MNIST measurement")
    p.add_argument("--mnist-source", default=None, help="folder of MNIST idx files to import if missing")
    p.add_argument("--mnist-temperature", type=float, default=100.0, help="T for the MNIST value")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, float32, CPU; T = {TEMPERATURE}, {CLASSES} classes; "
          "ms: median per step; ratios: median over interleaved rounds")

    rows, sizes = [], [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        print(f"\n{'B':>6} {'D':>5} {'ours ms':>9} {'rows ms':>9} {'naive ms':>9} {'floor ms':>9} "
              f"{'ours/rows':>10} {'ours/naive':>11} {'ours/floor':>11}")
    for b in sizes:
        for d in [int(s) for s in args.dims.split(",")]:
            r, n = _rounds(b)
            variants = VARIANTS if b <= args.no_naive_above or (b, d) == GOAL_NAIVE_AT else \
                tuple(v for v in VARIANTS if v != "naive")
            t = time_speed(b, d, args.rounds or r, args.steps or n, variants)
            row = dict(B=b, D=d, **{k: t[k] * 1e3 for k in variants},
                       **{k: v for k, v in t.items() if k.startswith("vs_")})
            rows.append(row)
            ms = [_cell(row, k, ".1f") for k in VARIANTS]
            vs = [_cell(row, f"vs_{k}", ".2f") for k in VARIANTS[1:]]
            print(f"{b:>6} {d:>5} {ms[0]:>9} {ms[1]:>9} {ms[2]:>9} {ms[3]:>9} {vs[0]:>10} {vs[1]:>11} {vs[2]:>11}",
                  flush=True)
    goals = {}
    for (b, d), key, goal in [(GOAL_FLOOR_AT, "vs_floor", GOAL_FLOOR), (GOAL_NAIVE_AT, "vs_naive", GOAL_NAIVE)]:
        row = next((r for r in rows if (r["B"], r["D"]) == (b, d) and key in r), None)
        if row is not None:
            goals[key] = row[key] <= goal
            print(f"goal at B={b}, D={d}: ours/{key[3:]} {row[key]:.2f} (<= {goal}): "
                  f"{'met' if goals[key] else 'NOT met'}")

    mem = {}
    for name, fused in [("ours", True), ("rows", False)][: 1 if args.no_rows_memory else 2]:
        mem[name] = measure_in_subprocess(dict(task="chunked", n=args.mem_n, d=32, chunk=args.chunk,
                                               temperature=TEMPERATURE, fused=fused), threads)
        res = mem[name]
        print(f"\n{name}: {args.mem_n} x 32 with gradients, chunk_size={args.chunk}: ", end="")
        if "error" in res:
            print(f"failed: {res['error']}")
        else:
            print(f"peak RSS {res['peak_gb']:.2f} GB (process after import {res['before_gb']:.2f} GB), "
                  f"{res['wall_s']:.1f} s, finite gradient: {res['finite']}", end="")
    print(f"\n(a dense {args.mem_n}^2 float32 matrix alone: {args.mem_n ** 2 * 4 / 1e9:.1f} GB)")
    if "error" not in mem["ours"]:
        goals["peak"] = mem["ours"]["peak_gb"] <= GOAL_PEAK_GB
        print(f"goal: ours' peak <= {GOAL_PEAK_GB} GB: {'met' if goals['peak'] else 'NOT met'}", end="")
        if "rows" in mem and "error" not in mem["rows"]:
            mem["vs_rows"] = mem["ours"]["wall_s"] / mem["rows"]["wall_s"]
            goals["chunked_time"] = mem["vs_rows"] <= 1.0
            print(f"; ours / rows wall time {mem['vs_rows']:.2f} (<= 1): "
                  f"{'met' if goals['chunked_time'] else 'NOT met'}", end="")
        print()

    mnist = None
    if not args.no_mnist:
        mnist = measure_in_subprocess(dict(task="mnist", source=args.mnist_source, chunk=args.chunk,
                                           temperature=args.mnist_temperature), threads)
        print(f"whole MNIST training set, pixels, T={args.mnist_temperature:g}, chunk_size={args.chunk}, "
              "no gradient: ", end="")
        if "error" in mnist:
            print(f"skipped ({mnist['error']})")
        else:
            print(f"{mnist['n']} x {mnist['d']}: loss {mnist['value']:.4f} in {mnist['wall_s']:.1f} s, "
                  f"peak RSS {mnist['peak_gb']:.2f} GB (data loaded: {mnist['before_gb']:.2f} GB)")
    return {"speed": rows, "memory": mem, "mnist": mnist, "goals": goals}


if __name__ == "__main__":
    main(sys.argv[1:])
