"""The book's sources follow the pipeline's contract, and a built site renders math offline.

The source checks always run. The site checks run when ``_build/html`` exists (``make book``);
the math check also needs a headless Chromium and is skipped, saying why, without one.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO

# headless Chromium, offline: here, in tests/test_site.py and (the same flags) `make screenshot`
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=15000")

HTML = REPO / "_build" / "html"
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())


def toc_pages() -> list[str]:
    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    yield str(node[key])
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(yaml.safe_load((REPO / "_toc.yml").read_text())))


def chapters() -> list[str]:
    return [p for p in toc_pages() if (REPO / "book" / f"{p}.py").exists()]


def test_toc_pages_exist_once():
    pages = toc_pages()
    assert pages and pages[0] == "intro" and len(pages) == len(set(pages))
    for page in pages:
        assert (REPO / "book" / f"{page}.md").exists() != (REPO / "book" / f"{page}.py").exists(), \
            f"_toc.yml entry {page!r} needs exactly one of book/{page}.md, book/{page}.py"


def test_config_renders_executed_notebooks_with_local_mathjax():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True
    assert not re.match(r"https?://", CONFIG["sphinx"]["config"]["mathjax_path"])
    assert "dollarmath" in CONFIG["parse"]["myst_enable_extensions"]
    # tables shown with display(Markdown(...)) render as tables (MyST-NB's default, CommonMark, has none)
    assert CONFIG["sphinx"]["config"]["nb_render_markdown_format"] == "myst"
    # commands in prose keep "--option" (no smart dashes) and straight quotes, so they can be copied
    assert CONFIG["sphinx"]["config"]["smartquotes"] is False


@pytest.mark.parametrize("chapter", chapters())
def test_chapter_has_a_small_profile_parameters_cell(chapter):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(REPO / "book" / f"{chapter}.py", fmt="py:percent")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{chapter}: one code cell tagged parameters"
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{chapter}: the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values.get("profile") == "small" and values.get("device") == "auto", values
    assert isinstance(values.get("seed"), int) and isinstance(values.get("results_dir"), str), values
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        f"{chapter}: the first cell is a markdown title"


STORY_TAGS = {"hide-input", "remove-input", "hide-cell", "remove-cell"}  # code collapsed or off the page
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?:([\w.-]+)::)?([\w-]+)[^`]*`|```\{glue\}\s+([\w-]+)\s*\n:doc:\s*(\S+)")


def glued_keys(path) -> set[str]:
    return set(re.findall(r"""\bglue\(\s*["']([\w-]+)["']""", path.read_text()))


@pytest.mark.parametrize("chapter", chapters())
def test_chapter_tells_the_story_before_the_code(chapter):
    """The page opens with prose; every code cell is collapsed ("show code") or off the page, the
    parameters cell collapsed but there; no cell ends in a bare expression (its repr would be
    the cell's output)."""
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(REPO / "book" / f"{chapter}.py", fmt="py:percent")
    intro = nb.cells[0].source.split("\n", 1)[-1]
    assert len(re.findall(r"[A-Za-z]{2,}", intro)) >= 40, f"{chapter}: the page opens without an introduction"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        first = cell.source.strip().splitlines()[0]
        assert tags & STORY_TAGS, f"{chapter}: code cell {i} ({first!r}) is shown: tag it hide-input or remove-input"
        if "parameters" in tags:
            assert tags & STORY_TAGS == {"hide-input"}, f"{chapter}: the parameters cell is collapsed, not removed"
        body = ast.parse(cell.source).body
        last = body[-1] if body else None
        assert not (isinstance(last, ast.Expr) and not isinstance(last.value, ast.Call)), \
            f"{chapter}: code cell {i} ends in the expression {ast.unparse(last)!r}: its repr would be printed"


def test_every_figure_has_a_named_numbered_caption():
    """A code cell that shows a figure (``plt.show()``) has MyST-NB figure metadata (``mystnb:
    figure: {name, caption}``): the page shows the figure with a numbered caption ("Fig. N") and an
    anchor. The caption pastes a text the notebook glues (computed from the run or the record, never a
    claim typed by hand), and the cell shows nothing else that the caption would wrap (a table
    displayed with it would become part of the figure). Names are unique across the book."""
    jupytext = pytest.importorskip("jupytext")
    names = []
    for chapter in chapters():
        nb = jupytext.read(REPO / "book" / f"{chapter}.py", fmt="py:percent")
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or "plt.show()" not in cell.source:
                continue
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("name") and figure.get("caption"), f"{chapter}: cell {i} shows a figure without a caption"
            names.append(figure["name"])
            keys = re.findall(r"\{glue:text\}`([\w-]+)`", figure["caption"])
            assert keys, f"{chapter}: the caption of {figure['name']} pastes no glued text"
            assert set(keys) <= glued_keys(REPO / "book" / f"{chapter}.py"), \
                f"{chapter}: {figure['name']}: the notebook does not glue its caption"
            assert cell.source.count("plt.show()") == 1 and "display(" not in cell.source, \
                f"{chapter}: {figure['name']}: one figure per cell, and nothing else displayed"
    assert names and len(names) == len(set(names)), "figure names repeat"


@pytest.mark.parametrize("page", toc_pages())
def test_numbers_pasted_into_prose_are_glued(page):
    """Every ``{glue:...}`key``` of a page's text names a value its notebook glues (``glue("key",
    ...)``), or for ``notebook.ipynb::key``, that notebook; else the build fails late, or worse,
    a number would be typed by hand."""
    source = REPO / "book" / (f"{page}.py" if (REPO / "book" / f"{page}.py").exists() else f"{page}.md")
    for doc, key, block_key, block_doc in GLUE_ROLE.findall(source.read_text()):
        doc, key = (doc or block_doc), (key or block_key)
        other = REPO / "book" / (doc.removesuffix(".ipynb") + ".py") if doc else source
        assert other.exists(), f"{page}: glue from {doc}, which is not a notebook of the book"
        assert key in glued_keys(other), f"{page}: {key!r} is pasted but {other.name} never glues it"


def test_no_notebook_is_committed():
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files == []


def built_page(name: str):
    page = HTML / f"{name}.html"
    if not page.exists():
        pytest.skip(f"no built book at {HTML} (run `make book`)")
    return page


def test_built_site_loads_nothing_from_the_network():
    html = built_page("intro").read_text()
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    assert any("mathjax/tex-svg.js" in s for s in scripts)
    assert not [s for s in scripts if re.match(r"(https?:)?//", s)]
    assert not re.findall(r'<link[^>]*href="(?:https?:)?//[^"]*"[^>]*stylesheet', html)
    assert (HTML / "_static" / "mathjax" / "tex-svg.js").is_file()


def test_intro_math_typesets_offline_from_file_url(tmp_path):
    page = built_page("intro")
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium)")
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp_path}", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    n_math = len(re.findall(r'class="math notranslate nohighlight"', page.read_text()))
    assert n_math >= 4  # the four numbered equations, at least
    assert dom.count("<mjx-container") == n_math, "MathJax did not typeset every formula"
    assert '<g data-mml-node="merror"' not in dom, "MathJax reported a TeX error"
    assert 'mathcolor="red"' not in dom, "undefined TeX macro"


def test_reproduction_page_comes_last_and_reads_the_committed_records():
    """The report page shows the committed paper-profile records (``records_dir``), not the records
    of the build (``results_dir``, which the Makefile sets to _build/results at the small profile)."""
    jupytext = pytest.importorskip("jupytext")
    assert toc_pages()[-1] == "reproduction"
    nb = jupytext.read(REPO / "book" / "reproduction.py", fmt="py:percent")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert re.search(r'^records_dir = "results"', params.source, re.M)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not params)
    assert "reproduction_report(records_dir)" in code and "results_dir" not in code


def test_make_screenshot_opens_the_browser_with_the_same_flags():
    text = (REPO / "Makefile").read_text()
    flags = re.search(r"^BROWSER_FLAGS := (.*?)\n(?=\S)", text, re.S | re.M).group(1).replace("\\\n", " ").split()
    assert set(FLAGS) <= set(flags), f"the Makefile's BROWSER_FLAGS lack {set(FLAGS) - set(flags)}"
