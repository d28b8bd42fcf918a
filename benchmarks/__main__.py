"""Run every ``benchmarks/bench_*.py`` module's ``main()``, or those named.

    python -m benchmarks              # all of them, in name order
    python -m benchmarks dknn loss    # bench_dknn.py and bench_loss.py
    python -m benchmarks --list

Each runs with its default arguments (``main([])`` when it takes an argv list);
run one module directly for its own options: ``python -m benchmarks.bench_dknn -h``.
The exit status is 1 if any benchmark raised or none was found.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """Names (without the ``bench_`` prefix) of the benchmark modules, sorted."""
    return sorted(p.stem[len("bench_"):] for p in Path(__file__).parent.glob("bench_*.py"))


def run(name: str) -> None:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    main = getattr(module, "main", None)
    if not callable(main):
        raise TypeError(f"benchmarks/bench_{name}.py has no main() function")
    main([]) if inspect.signature(main).parameters else main()


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    unknown = [n for n in args.names if n not in found]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(found) or 'none'}")
    names = args.names or found
    if not names:
        print("no benchmarks found (benchmarks/bench_*.py)", file=sys.stderr)
        return 1
    failed = []
    for name in names:
        print(f"=== bench_{name}", flush=True)
        t0 = time.perf_counter()
        try:
            run(name)
        except Exception:  # noqa: BLE001 - report it, run the others, fail at the end
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench_{name}: {'FAILED' if name in failed else 'done'} in {time.perf_counter() - t0:.1f} s",
              flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli())
