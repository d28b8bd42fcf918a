"""``python -m snnl.experiments.regularization``: the command line of :mod:`snnl.experiments.regularization.study`."""

from snnl.experiments.regularization.study import main

raise SystemExit(main())
