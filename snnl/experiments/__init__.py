"""The paper's experiments, one package per chapter of the book (paper Sections 2-5 and the
appendices): the functions that the book, the command lines and the tests all call.

* :mod:`snnl.experiments.loss`, :mod:`~snnl.experiments.discriminative`,
  :mod:`~snnl.experiments.regularization`, :mod:`~snnl.experiments.generative`,
  :mod:`~snnl.experiments.ood`, :mod:`~snnl.experiments.adversarial`,
  :mod:`~snnl.experiments.beyond` -- one per chapter (``book/<chapter>.py``), one module per paper
  item or tight group of items inside;
* :mod:`snnl.experiments.report` -- the reproduction report, which reads them all;
* :mod:`snnl.experiments.common` -- what the chapters share.

Each item module has the same parts in the same order: ``PAPER`` (the paper's numbers and
claims), its config and ``small`` / ``paper`` profiles (read through
:func:`snnl.experiments.common.profiles.profile_values`), ``run_*`` functions that write a results
record (:class:`snnl.results.Run`, finished by :func:`snnl.experiments.common.records.finish_run`),
``plot_*`` / ``table_*`` of a record (this run's or a committed one), and its rows of the
reproduction report (``report_items(records)``). A chapter imports only its own package and
``common``. The README's *Layout* section maps chapters, packages, paper items and records.

They need the extra ``snnl[experiments]`` (torchvision, scipy, scikit-learn, matplotlib,
pytorch-ood, faiss): without it, importing any of them is one line that says so.
"""

from snnl.extras import check_installed

check_installed(("torchvision", "scipy", "sklearn", "matplotlib", "faiss", "pytorch_ood"), "experiments",
                "snnl.experiments (the paper's experiments)")
