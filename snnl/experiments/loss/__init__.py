"""Section 2 and Apps. A, B (book chapter ``loss``): the soft nearest neighbor loss on synthetic data.

* :mod:`~snnl.experiments.loss.synthetic` -- Figs. 1, 2, 13 and the loss against temperature.
"""
