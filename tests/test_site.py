"""The built site works offline from ``file://`` in headless Chromium: every page of ``_toc.yml``
shows its figures, typesets its math and carries no error output, and the search page finds pages.
What a reader sees (tests/site_checks.py): tables rendered as tables, no bare Python repr, prose in
the first screen of every page, every picture a figure with a numbered caption, no option written
with an en dash, and every link between the site's files resolving; laid out in a reader's window
(site_checks.layout), no table wider than its column unless it scrolls inside it, and every chapter
with its status badges in the first screen.

Runs after ``make book`` (``_build/html``); skipped, saying why, without a built site or without
Chromium. ``make site-check`` installs Chromium when missing and sets ``SNNL_SITE_CHECK=1``, which
turns those skips into failures. One Chromium process per page, two at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import site_checks
from conftest import REPO
from test_book import BROWSERS, FLAGS, toc_pages

HTML = REPO / "_build" / "html"
EXECUTED = REPO / "_build" / "small"  # the executed notebooks the site was rendered from
PAGES = toc_pages()
REQUIRED = os.environ.get("SNNL_SITE_CHECK") == "1"
NARROW = (560, 900)  # a narrow window: no sidebars, the column nearly as wide as the window
WINDOWS = (site_checks.WINDOW, NARROW)
# the chapters that run paper items: each opens with its status badges ("At a glance")
CHAPTERS = ("loss", "discriminative", "regularization", "generative", "adversarial", "ood", "beyond")
ERROR_MARKS = ("Traceback (most recent call last)", "highlight-ipythontb", "output traceback",
               "papermill-error-cell", "An Exception was encountered")


def unavailable(reason: str):
    (pytest.fail if REQUIRED else pytest.skip)(reason)


def browser() -> str:
    found = next((b for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        unavailable("no headless Chromium installed (`make site-check` installs it)")
    return found


def dump_dom(url: str) -> str:
    """The DOM of ``url`` after scripts ran (15 s of virtual time), from a fresh profile."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout


@pytest.fixture(scope="module")
def doms() -> dict[str, str]:
    """Every built page's rendered DOM, two Chromium processes at a time."""
    if not (HTML / "index.html").exists():
        unavailable(f"no built book at {HTML} (run `make book`)")
    browser()
    pages = [p for p in PAGES if (HTML / f"{p}.html").exists()]
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(pages, pool.map(lambda p: dump_dom((HTML / f"{p}.html").as_uri()), pages)))


@pytest.fixture(scope="module")
def layouts() -> dict[tuple[str, tuple], dict]:
    """Every built page laid out in a reader's window (site_checks.WINDOW) and in a narrow one
    (NARROW: the theme's one-column layout), with the measurements of site_checks.LAYOUT_SCRIPT,
    by (page, window); two Chromium processes at a time."""
    if not (HTML / "index.html").exists():
        unavailable(f"no built book at {HTML} (run `make book`)")
    found = browser()
    keys = [(p, w) for p in PAGES if (HTML / f"{p}.html").exists() for w in WINDOWS]
    base = HTML.as_uri() + "/"
    lay = lambda key: site_checks.layout((HTML / f"{key[0]}.html").read_text(), base, found, FLAGS, window=key[1])
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(keys, pool.map(lay, keys)))


def article(html: str) -> str:
    """The page's main article (the navigation aside)."""
    m = re.search(r"<article[^>]*bd-article[^>]*>(.*)</article>", html, re.S)
    return m.group(1) if m else html


def notebook_outputs(page: str) -> list[dict]:
    """The outputs of the executed notebook the page was rendered from ([] for a .md page)."""
    nb = EXECUTED / f"{page}.ipynb"
    if not nb.exists():
        return []
    nbformat = pytest.importorskip("nbformat")
    return [o for c in nbformat.read(nb, as_version=4).cells for o in c.get("outputs", [])]


def notebook_figures(page: str) -> int:
    """Image outputs of the executed notebook the page was rendered from (0 for a .md page)."""
    return sum(any(k.startswith("image/") for k in o.get("data", {})) for o in notebook_outputs(page))


def notebook_tables(page: str) -> int:
    """Markdown tables among the outputs of the executed notebook of ``page`` (0 for a .md page)."""
    texts = [o.get("data", {}).get("text/markdown", "") for o in notebook_outputs(page)]
    return sum(len(re.findall(r"^\|(?:\s*:?-{3,}:?\s*\|)+\s*$", t, re.M)) for t in texts)


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_as_a_page(page, doms):
    """What a reader sees: the tables of the notebook as tables, no raw Markdown table syntax, no
    bare repr of a Python object, prose in the first screen, code only behind "show code"."""
    dom = doms[page]
    body = article(dom)
    expected, shown = notebook_tables(page), len(re.findall(r"<table\b", body))
    assert shown >= expected, f"{page}: {expected} Markdown table(s) in the notebook's outputs, {shown} on the page"
    raw = site_checks.raw_markdown_tables(dom)
    assert not raw, f"{page}: Markdown table syntax shown as text: {raw[:3]}"
    reprs = site_checks.bare_reprs(dom)
    assert not reprs, f"{page}: a Python object's repr as output: {reprs[:3]}"
    words = site_checks.first_screen_prose(dom)
    assert words >= site_checks.MIN_PROSE_WORDS, f"{page}: {words} words of prose in the first screen"
    code = site_checks.shown_code(dom)
    assert not code, f"{page}: code shown open, not behind a 'show code' toggle: {code[:3]}"
    bare = site_checks.uncaptioned_figures(dom)
    assert not bare, f"{page}: {len(bare)} picture(s) without a numbered caption: {bare[:3]}"
    dashes = site_checks.option_dashes(dom)
    assert not dashes, f"{page}: an option written with an en or em dash (copying fails): {dashes[:3]}"


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w[0]}px")
@pytest.mark.parametrize("page", PAGES)
def test_tables_fit_their_column_or_scroll_inside_it(page, window, layouts):
    wide = site_checks.wide_tables(layouts[page, window])
    assert not wide, f"{page}, {window[0]} px window: {len(wide)} table(s) cut off or widening the page: {wide[:3]}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_shows_its_status_badges_in_the_first_screen(page, layouts):
    assert page in PAGES, f"{page} is not a page of _toc.yml"
    n = site_checks.first_screen_badges(layouts[page, site_checks.WINDOW])
    assert n, f"{page}: no status badge in the first screen ({site_checks.WINDOW[0]} px wide window)"


def test_links_between_the_sites_files_resolve():
    if not (HTML / "index.html").exists():
        unavailable(f"no built book at {HTML} (run `make book`)")
    broken = site_checks.broken_links(HTML)
    assert not broken, f"{len(broken)} broken link(s): {broken[:10]}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(page, doms):
    source = HTML / f"{page}.html"
    assert source.exists(), f"_toc.yml lists {page} but the site has no {source.name}"
    html, dom = source.read_text(), doms[page]
    assert "</html>" in dom and len(dom) > len(html) / 2, f"{page}: Chromium rendered nothing"
    body = article(dom)
    # no resources from the network
    tags = re.findall(r"<(?:script|img)\b[^>]*>", html) + [t for t in re.findall(r"<link\b[^>]*>", html) if "stylesheet" in t]
    remote = [t for t in tags if re.search(r'\s(?:src|href)="(?:https?:)?//', t)]
    assert not remote, f"{page} loads from the network: {remote}"
    # figures: every image is inline data or a file of the site, and none is missing
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', body)
    for src in srcs:
        if not src.startswith("data:image/"):
            path = Path(unquote(urlparse(src).path)) if src.startswith("file:") else source.parent / unquote(src)
            assert path.is_file(), f"{page}: image {src} is not in the site"
    expected = notebook_figures(page)
    assert len(srcs) >= expected, f"{page}: {expected} figure(s) in the notebook, {len(srcs)} on the page"
    # math: every formula typeset by MathJax, without TeX errors
    n_math = len(re.findall(r'class="math notranslate nohighlight"', html))
    if n_math:
        assert dom.count("<mjx-container") >= n_math, f"{page}: MathJax typeset {dom.count('<mjx-container')} of {n_math}"
        assert '<g data-mml-node="merror"' not in dom and 'mathcolor="red"' not in dom, f"{page}: TeX error"
    # a chapter (a notebook) opens with its run banner, finished: profile, data, device, wall time
    if (EXECUTED / f"{page}.ipynb").exists():
        banner = re.search(r'<div class="admonition note snnl-banner">(.*?)</div>', body, re.S)
        assert banner, f"{page}: no run banner"
        text = re.sub(r"<[^>]+>", " ", banner.group(1))
        assert all(k in text for k in ("Profile", "Data", "Device", "Wall time")), f"{page}: banner {text!r}"
        assert "running" not in text, f"{page}: the banner was never finished (no wall time): {text!r}"
        h2 = body.find("<h2")
        assert h2 < 0 or body.index("snnl-banner") < h2, f"{page}: the banner is not above the first section"
    # no error output of an executed cell, no path of the machine that built the site
    leaked = [m for m in (str(REPO), "site-packages") if m in re.sub(r"<[^>]+>", "", body)]
    assert not leaked, f"{page}: machine paths in the page's text: {leaked}"
    found = [m for m in ERROR_MARKS if m in body]
    assert not found, f"{page}: error output on the page ({found})"


def test_search_works_offline():
    page = HTML / "search.html"
    if not page.exists():
        unavailable(f"no built book at {HTML} (run `make book`)")
    html = page.read_text()
    assert re.search(r'<script[^>]*src="searchindex\.js"', html) and (HTML / "searchindex.js").is_file()
    dom = dump_dom(page.as_uri() + "?q=entanglement")
    hits = re.findall(r'<ul class="search">(.*?)</ul>', dom, re.S)
    assert hits and 'href="intro.html' in hits[0], "the search found nothing from file:// (searchindex.js not loaded?)"
