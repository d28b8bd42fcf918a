"""``python -m snnl.experiments.generative``: the command line of :mod:`snnl.experiments.generative.gans`."""

from snnl.experiments.generative.gans import main

main()
