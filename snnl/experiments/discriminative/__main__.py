"""``python -m snnl.experiments.discriminative``: the command line of :mod:`snnl.experiments.discriminative.representations`."""

from snnl.experiments.discriminative.representations import main

raise SystemExit(main())
