"""Paper experiments, one module per paper item or tight group of items (paper Sections 2-5 and
the appendices): the functions that the book, the command line and the tests all call. Each item
module has the same parts in the same order: ``PAPER`` (the paper's numbers and claims), its
config and ``small`` / ``paper`` profiles (read through :func:`snnl.experiments.common.profile_values`),
``run_*`` functions that write a results record (:class:`snnl.results.Run`, finished by
:func:`snnl.experiments.common.finish_run`), ``plot_*`` / ``table_*`` of a record (this run's or a
committed one), and its rows of the reproduction report (``report_items(records)``). What several
items need is shared underneath: :mod:`snnl.experiments.common`, :mod:`snnl.experiments.checkpoints`,
:mod:`snnl.experiments.geometry_base` (Section 5) and :mod:`snnl.experiments.report_rows`.
The README's *Layout* section lists every module."""
