"""Section 5 and App. E (book chapter ``ood``): entangled representations and what they set apart.

* :mod:`~snnl.experiments.ood.base` -- the configuration, profiles, data and trained models shared by the items below;
* :mod:`~snnl.experiments.ood.gradients` -- Figs. 10, 11: the gradients a targeted attack follows;
* :mod:`~snnl.experiments.ood.outliers` -- Figs. 12, 21: out-of-distribution inputs set apart;
* :mod:`~snnl.experiments.ood.hidden` -- Fig. 22: adversarial points in the first hidden layer;
* :mod:`~snnl.experiments.ood.robustness` -- Table 2 (App. E): entanglement of a PGD-trained model;
* :mod:`~snnl.experiments.ood.geometry` -- runs the four items above; its command line.

Command line: ``python -m snnl.experiments.ood --help``.
"""
