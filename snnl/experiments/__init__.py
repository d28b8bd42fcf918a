"""Paper experiments, one module per section: the functions that the book, the command line and
the tests all call. Each returns plain data (arrays, floats, dicts) and can write a results record
(:class:`snnl.results.Run`)."""
