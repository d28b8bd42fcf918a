"""``python -m snnl.experiments.report``: the command line of :mod:`snnl.experiments.report.ledger`."""

from snnl.experiments.report.ledger import main

raise SystemExit(main())
