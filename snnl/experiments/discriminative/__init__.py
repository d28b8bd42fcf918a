"""Section 3.1 and App. C (book chapter ``discriminative``): entanglement of hidden layers over training.

* :mod:`~snnl.experiments.discriminative.representations` -- Figs. 3, 15, 16: the entanglement of every layer over cross-entropy training.

Command line: ``python -m snnl.experiments.discriminative --help``.
"""
