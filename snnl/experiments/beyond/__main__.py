"""``python -m snnl.experiments.beyond``: the command line of :mod:`snnl.experiments.beyond.benchmark`."""

from snnl.experiments.beyond.benchmark import main

raise SystemExit(main())
