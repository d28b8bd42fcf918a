"""Paper experiments, one module per paper item or tight group of items (paper Sections 2-5 and
the appendices): the functions that the book, the command line and the tests all call. Each item
module configures its runs (``small`` and ``paper`` profiles through
:func:`snnl.experiments.common.config_from_profile`), runs them and writes a results record
(:class:`snnl.results.Run`), draws them, and builds its rows of the reproduction report
(``report_items(records)``). What several items need is shared underneath:
:mod:`snnl.experiments.common`, :mod:`snnl.experiments.checkpoints`,
:mod:`snnl.experiments.geometry_base` (Section 5) and :mod:`snnl.experiments.report_rows`.
The README's *Layout* section lists every module."""
