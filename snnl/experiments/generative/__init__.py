"""Section 3.2 and Apps. D, I (book chapter ``generative``): GANs and entanglement.

* :mod:`~snnl.experiments.generative.gans` -- Figs. 4-6, 17, 23, App. I: the runs, their records and report rows; its command line;
* :mod:`~snnl.experiments.generative.plots` -- the GAN figures and tables, and how records keep sample grids and t-SNE points.

Command line: ``python -m snnl.experiments.generative --help``.
"""
