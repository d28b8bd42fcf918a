"""Section 4 (book chapter ``regularization``): entanglement as a regulariser.

* :mod:`~snnl.experiments.regularization.table1` -- Table 1: baseline vs entangled test accuracy (and the alpha sign convention);
* :mod:`~snnl.experiments.regularization.fig7` -- Fig. 7: test accuracy against alpha;
* :mod:`~snnl.experiments.regularization.fig8` -- Fig. 8: overfitting over long training;
* :mod:`~snnl.experiments.regularization.study` -- the Table 1 recipe study (which part of the recipe makes the gain); its command line.

Command line: ``python -m snnl.experiments.regularization --help``.
"""
