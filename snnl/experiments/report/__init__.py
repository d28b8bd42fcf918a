"""The reproduction report (book page ``reproduction``): reads every chapter's records and rows.

* :mod:`~snnl.experiments.report.ledger` -- reads the records, assembles every item's rows, renders the ledger and the README block.

Command line: ``python -m snnl.experiments.report --help``.
"""
