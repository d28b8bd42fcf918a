"""Benchmarks: speed and memory goals, run by ``make bench`` (``python -m benchmarks``).

Each ``benchmarks/bench_<name>.py`` module defines ``main()`` (optionally
``main(argv)`` taking a list of command-line arguments) and prints what it
measured. Adding a file is enough; ``python -m benchmarks`` discovers it.
"""
