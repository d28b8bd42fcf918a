"""Section 5.2 and Apps. F-H (book chapter ``adversarial``): Deep k-NN calibration under attack.

* :mod:`~snnl.experiments.adversarial.models` -- the calibration experiment's config, model roles and training;
* :mod:`~snnl.experiments.adversarial.calibration` -- Figs. 9, 14, 18-20: DkNN calibration under attack, transferability; its command line;
* :mod:`~snnl.experiments.adversarial.plots` -- the calibration figures and tables.

Command line: ``python -m snnl.experiments.adversarial --help``.
"""
