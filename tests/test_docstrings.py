"""The docstrings of the public names, as the book's API page shows them (book/api.md, Sphinx
autodoc): each its own one-line summary, and an example in which it is used with other names
of the package, run here as a doctest."""

from __future__ import annotations

import doctest
import re

import pytest

import snnl

DATA = ("MODELS", "DATASETS")  # constants: autodoc reads their docstrings from snnl/__init__.py


def attribute_docs() -> dict[str, str]:
    """The docstrings that Sphinx autodoc shows for the constants of ``snnl`` (its own analyzer)."""
    pycode = pytest.importorskip("sphinx.pycode")
    docs = pycode.ModuleAnalyzer.for_module("snnl").find_attr_docs()
    return {name: "\n".join(lines) for (scope, name), lines in docs.items() if scope == ""}


def docstring(name: str) -> str:
    if name in DATA:
        return attribute_docs().get(name, "")
    return getattr(snnl, name).__doc__ or ""  # its own, not one inherited (as autodoc shows it)


def summary(doc: str) -> str:
    """The first line, when it stands alone (a blank line, or nothing, after it)."""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines and (len(lines) == 1 or not lines[1].strip()) else ""


def example_code(doc: str) -> str:
    return "\n".join(line.strip()[4:] for line in doc.splitlines() if line.strip().startswith((">>> ", "... ")))


def uses(code: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}\b|\bsnnl\.{re.escape(name)}\b", code) is not None


def test_the_checks_see_a_bad_docstring():
    auto = "TrainConfig(dataset: 'str' = 'digits', model: 'str' = 'cnn')"  # a dataclass without a docstring
    assert summary(auto) == auto  # caught below: a summary starting with the name's signature
    assert summary("Two lines\n    of summary.\n\n    More.") == ""
    assert summary("One line.\n\n    >>> x = 1") == "One line."
    assert example_code("Text.\n\n    >>> a = f(1)\n    ... + g(2)\n    3\n") == "a = f(1)\n+ g(2)"
    assert uses("x = snnl.DkNN(k=3)", "DkNN") and uses("DkNN(k=3).fit(f, y)", "DkNN")
    assert not uses("MyDkNN(k=3)", "DkNN") and not uses("m.DkNN(k=3)", "DkNN")


def test_the_constants_have_their_own_docstrings_not_the_tuples():
    docs = attribute_docs()
    for name in DATA:
        assert name in docs, name
        assert "Built-in immutable sequence" not in docs[name] and tuple.__doc__ not in docs[name]
    assert snnl.MODELS == snnl.models.MODELS and snnl.DATASETS == snnl.data.DATASETS  # the same tuples


def test_every_public_name_has_its_own_one_line_summary():
    summaries = {name: summary(docstring(name)) for name in snnl.__all__}
    missing = [name for name, s in summaries.items() if not s or not s.endswith(".") or s.startswith(name + "(")]
    assert not missing, f"no one-line summary ending with a full stop: {missing}"
    seen: dict[str, str] = {}
    for name, s in summaries.items():
        assert s not in seen, f"{name} and {seen[s]} share the summary {s!r}"
        seen[s] = name


@pytest.mark.parametrize("name", snnl.__all__)
def test_every_public_name_has_an_example_with_other_names_that_runs(name, tmp_path, monkeypatch):
    doc = docstring(name)
    code = example_code(doc)
    others = [other for other in snnl.__all__ if other != name and uses(code, other)]
    assert uses(code, name) and others, f"{name}: its example must use it with other names of snnl"
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    test = doctest.DocTestParser().get_doctest(doc, dict(vars(snnl)), name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda text: pytest.fail(f"{name}: its example fails\n{text}", pytrace=False))
    assert runner.summarize(verbose=False).attempted >= 2


def test_each_argument_of_load_dataset_has_its_own_description():
    """``size`` and ``channels`` (once one entry, ``size, channels:``) say each what it does."""
    args = {}
    for line in snnl.load_dataset.__doc__.splitlines():
        m = re.match(r"\s{8}(\w+(?:, \w+)*): (.*)", line)
        if m:
            args[m[1]] = m[2]
    assert {"size", "channels", "source", "verify"} <= args.keys(), args.keys()
    assert "pixels" in args["size"] and "channels" not in args["size"]
    assert "colour channels" in args["channels"] and args["size"] != args["channels"]
