"""Beyond the paper (book chapter ``beyond``): seven OOD detectors, baseline vs entangled.

* :mod:`~snnl.experiments.beyond.benchmark` -- config, profiles, runs and records; its command line;
* :mod:`~snnl.experiments.beyond.detectors` -- the detectors (two DkNN scores by hand, five from pytorch-ood) and the metrics;
* :mod:`~snnl.experiments.beyond.results` -- the records read back: summaries over seeds, verdicts, table, heat maps.

Command line: ``python -m snnl.experiments.beyond --help``.
"""
