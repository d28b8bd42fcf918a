"""The cost of ``import snnl`` against ``import torch`` alone: time and peak memory.

Each measurement is a fresh interpreter (``python -c``) that imports one module and prints the
import's wall time and its peak resident memory (``ru_maxrss``); the two imports alternate,
``rounds`` times each, so that a busy machine slows both alike, and the ratios are the medians'.
The interpreter's own start-up is outside the timed part. The modules that ``import snnl`` must
not load (:data:`HEAVY`) are listed when it does.
Goal: ``import snnl`` at most 1.1x ``import torch`` in time and in memory.

    python -m benchmarks.bench_import [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

GOAL = 1.1
HEAVY = ("faiss", "torchvision", "PIL", "matplotlib", "sklearn", "scipy")
"""Top-level packages that ``import snnl`` leaves unloaded: each module imports them where it uses them."""

_CHILD = """
import json, resource, sys, time
t = time.perf_counter()
import {module}
t = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"seconds": t, "max_rss": rss, "heavy": heavy}}))
"""


def measure(module: str, python: str = sys.executable) -> dict:
    """One fresh interpreter importing ``module``: ``{"seconds", "max_rss" (bytes), "heavy"}``."""
    out = subprocess.run([python, "-c", _CHILD.format(module=module, heavy=HEAVY)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    """Run once, print the medians and the ratios, return them."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="imports of each module, alternating")
    args = p.parse_args([] if argv is None else argv)
    runs: dict[str, list[dict]] = {"torch": [], "snnl": []}
    for r in range(args.rounds):
        for m in (("torch", "snnl") if r % 2 == 0 else ("snnl", "torch")):
            runs[m].append(measure(m))
    sec = {m: statistics.median(x["seconds"] for x in v) for m, v in runs.items()}
    rss = {m: statistics.median(x["max_rss"] for x in v) for m, v in runs.items()}
    heavy = sorted({h for x in runs["snnl"] for h in x["heavy"]})
    ratio_s, ratio_m = sec["snnl"] / sec["torch"], rss["snnl"] / rss["torch"]
    print(f"fresh interpreters, {args.rounds} imports of each, alternating; median:")
    for m in runs:
        print(f"  import {m:6s} {1e3 * sec[m]:8.0f} ms   peak RSS {rss[m] / 2**20:7.1f} MiB")
    verdict = "meets" if max(ratio_s, ratio_m) <= GOAL else "misses"
    print(f"  snnl / torch: {ratio_s:.3f} time, {ratio_m:.3f} memory ({verdict} the goal <= {GOAL})")
    print(f"  heavy packages loaded by import snnl: {', '.join(heavy) if heavy else 'none'}")
    return {"seconds": sec, "max_rss": rss, "ratio_time": ratio_s, "ratio_memory": ratio_m, "heavy": heavy,
            "goal": GOAL}


if __name__ == "__main__":
    main(sys.argv[1:])
