"""``python -m snnl.experiments.adversarial``: the command line of :mod:`snnl.experiments.adversarial.calibration`."""

from snnl.experiments.adversarial.calibration import main

raise SystemExit(main())
