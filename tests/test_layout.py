"""The package's layout rules, read from the source with ``ast`` (imports inside functions count):
no import cycle between modules of ``snnl``, no module importing another module's ``_private``
name, no module over 400 lines, no module ``__getattr__`` (every name is where it is defined or
imported); and the experiments mirror the book: ``snnl/experiments/<chapter>/`` per chapter of
``book/``, what they share in ``snnl/experiments/common/``, the report (which reads them all) in
``snnl/experiments/report/``. A chapter imports only its own package and ``common``, in the
book and in the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# modules still over MAX_LINES, each to be split (the test below fails once one fits, so that it
# leaves this list)
LONG_FOR_NOW: set[str] = set()


def modules(root: Path, package: str = "snnl") -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root / package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import statement of the module,
    at any depth (functions, classes, ``if`` blocks); only modules in ``known``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for a in node.names:
                if f"{base}.{a.name}" in known:  # from package import module
                    found.append((f"{base}.{a.name}", None))
                elif base in known:
                    found.append((base, a.name))
    return found


def import_graph(root: Path, package: str = "snnl") -> dict[str, set[str]]:
    known = modules(root, package)
    return {m: {target for target, _ in imports(m, p, known) if target != m} for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, first = last) per back edge of a depth-first search."""
    state, found = {}, []

    def visit(u, stack):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = "done"

    for u in sorted(graph):
        if u not in state:
            visit(u, [])
    return found


def private_imports(root: Path, package: str = "snnl") -> list[str]:
    known = modules(root, package)
    return [f"{m} imports {name} from {target}" for m, p in known.items()
            for target, name in imports(m, p, known) if name and name.startswith("_") and target != m]


# the chapters of the book (book/<name>.py) and their packages (snnl/experiments/<name>/)
CHAPTERS = ("loss", "discriminative", "regularization", "generative", "ood", "adversarial", "beyond")
PACKAGE_OF_PAGE = {**{c: c for c in CHAPTERS}, "reproduction": "report"}
SHARED, READS_ALL = "common", "report"


def experiment_packages(name: str, path: Path, known: dict[str, Path], base: str = "snnl.experiments") -> set[str]:
    """The packages of ``base`` (its direct subpackages) that a module or notebook imports."""
    found = set()
    for target, taken in imports(name, path, known):
        if target == base and taken:
            found.add(taken)
        elif target.startswith(base + "."):
            found.add(target[len(base) + 1:].split(".")[0])
    return found


def chapter_violations(root: Path, book: Path | None = None, package: str = "snnl") -> list[str]:
    """What breaks the chapter rules under ``root/<package>/experiments`` (and in ``book``)."""
    base = f"{package}.experiments"
    known = modules(root, package)
    bad = []
    top = root / package / "experiments"
    for entry in sorted(top.iterdir()):
        if entry.is_dir() and entry.name != "__pycache__" and entry.name not in (*CHAPTERS, SHARED, READS_ALL):
            bad.append(f"{entry.name}/ is no chapter of the book")
        elif entry.is_file() and entry.suffix == ".py" and entry.name not in ("__init__.py", "__main__.py"):
            bad.append(f"{entry.name} sits directly in {base} (belongs to a chapter's package or common)")
    for name, path in known.items():
        if not name.startswith(base + "."):
            continue
        own = name.split(".")[2]
        if own == READS_ALL:
            continue
        allowed = {own} if own == SHARED else {own, SHARED}
        for other in sorted(experiment_packages(name, path, known, base) - allowed):
            bad.append(f"{name} imports the package {other}")
    for page in sorted(book.glob("*.py")) if book else ():
        own = PACKAGE_OF_PAGE.get(page.stem)
        for other in sorted(experiment_packages(f"book.{page.stem}", page, known, base) - {own, SHARED}):
            bad.append(f"book/{page.name} imports the package {other}")
    return bad


# ---- the checks, first on small made-up packages ---------------------------------------------------
def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_checks_find_a_cycle_through_a_function_level_import_and_private_names(tmp_path):
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg.c import _secret\n    return _secret\n",
        "pkg/c.py": "def f():\n    from . import a\n    return a\n_secret = 1\n",
        "pkg/d.py": "import pkg.a\nfrom pkg import b\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == {"pkg.a", "pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert private_imports(root, "pkg") == ["pkg.b imports _secret from pkg.c"]


def test_checks_pass_a_clean_package(tmp_path):
    root = write(tmp_path, {"pkg/__init__.py": "from pkg.a import f\n", "pkg/a.py": "from pkg.b import g\nf = g\n",
                            "pkg/b.py": "def g():\n    return 1\n"})
    assert cycles(import_graph(root, "pkg")) == [] and private_imports(root, "pkg") == []


def test_chapter_rules_find_a_cross_chapter_import_a_stray_module_and_a_book_page_reading_another_chapter(tmp_path):
    root = write(tmp_path, {
        "pkg/__init__.py": "", "pkg/experiments/__init__.py": "", "pkg/experiments/stray.py": "",
        "pkg/experiments/common/__init__.py": "", "pkg/experiments/common/tables.py": "",
        "pkg/experiments/loss/__init__.py": "", "pkg/experiments/loss/synthetic.py": "from pkg.experiments.common import tables\n",
        "pkg/experiments/ood/__init__.py": "",
        "pkg/experiments/ood/base.py": "def f():\n    from pkg.experiments.loss import synthetic\n",
        "pkg/experiments/report/__init__.py": "", "pkg/experiments/report/ledger.py": "from pkg.experiments.ood import base\n",
        "book/loss.py": "from pkg.experiments.loss.synthetic import x\nfrom pkg.experiments import ood\n",
        "book/ood.py": "from pkg.experiments.ood import base\nfrom pkg.experiments.common.tables import t\n",
    })
    assert chapter_violations(root, root / "book", "pkg") == [
        "stray.py sits directly in pkg.experiments (belongs to a chapter's package or common)",
        "pkg.experiments.ood.base imports the package loss", "book/loss.py imports the package ood"]


# ---- the package ----------------------------------------------------------------------------------
def test_experiments_mirror_the_book():
    """One package per chapter (the pages of _toc.yml), common, report; the rules above hold."""
    pages = {p.stem for p in (ROOT / "book").glob("*.py")}
    assert pages == set(PACKAGE_OF_PAGE), pages ^ set(PACKAGE_OF_PAGE)
    assert all((ROOT / "snnl" / "experiments" / pkg / "__init__.py").exists() for pkg in (*CHAPTERS, SHARED, READS_ALL))
    assert chapter_violations(ROOT, ROOT / "book") == []


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_no_module_imports_another_modules_private_names():
    assert private_imports(ROOT) == []


@pytest.mark.parametrize("name", sorted(modules(ROOT)))
def test_modules_are_at_most_400_lines(name):
    lines = len(modules(ROOT)[name].read_text().splitlines())
    if name in LONG_FOR_NOW:
        assert lines > MAX_LINES, f"{name} fits now ({lines} lines): take it off LONG_FOR_NOW"
    else:
        assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES})"


def test_no_module_getattr():
    for name, path in modules(ROOT).items():
        tree = ast.parse(path.read_text())
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert "__getattr__" not in defined, f"{name} defines a module __getattr__"


def test_the_readme_layout_lists_every_module_of_the_library():
    """The README's *Layout* section is the map: one row per module of ``snnl/``, none that is gone."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    library = section.split("The paper's experiments", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", library, flags=re.M))
    packages = {p.parent.name for p in (ROOT / "snnl").glob("*/__init__.py")} - {"experiments"}
    assert rows == {p.stem for p in (ROOT / "snnl").glob("*.py")} | packages
