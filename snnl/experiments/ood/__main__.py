"""``python -m snnl.experiments.ood``: the command line of :mod:`snnl.experiments.ood.geometry`."""

from snnl.experiments.ood.geometry import main

raise SystemExit(main())
