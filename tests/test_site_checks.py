"""The reader-facing checks of ``make site-check`` (tests/site_checks.py) on small pages: each
finds its defect, and passes the same page without it. No built site; the checks of the laid-out
page (wide tables, badges in the first screen) run their small pages in headless Chromium, and are
skipped without it (a failure under ``SNNL_SITE_CHECK=1``, as ``make site-check`` sets)."""

from __future__ import annotations

import os
import shutil

import pytest

import site_checks as sc
from test_book import BROWSERS, FLAGS

PROSE = ("<p>The paper trains classifiers on a composite objective, cross-entropy minus alpha times "
         "the soft nearest neighbor loss of every hidden layer, and claims that the entangled models "
         "generalise a little better than their baselines.</p>")
CODE = '<div class="cell_input docutils container"><div class="highlight-ipython3 notranslate"><pre>{}</pre></div></div>'
HIDDEN_CODE = ('<details class="hide above-input"><summary>Show code cell source</summary>'
               + CODE + "</details>")
OUTPUT = '<div class="cell_output docutils container"><div class="output {} highlight-myst-ansi"><pre>{}</pre></div></div>'


def page(*body: str) -> str:
    return ('<html><head><title>t</title><script>var a = "|---|";</script></head><body>'
            '<nav><p>navigation</p></nav><article class="bd-article"><h1>Title</h1>'
            + "".join(body) + "</article></body></html>")


def test_raw_markdown_table_is_found():
    raw = "<p>| item | paper | ours |\n|---|---|---|\n| Table 1 | 99.16 | 98.55 |</p>"
    assert sc.raw_markdown_tables(page(PROSE, raw)) == [
        "| item | paper | ours | |---|---|---| | Table 1 | 99.16 | 98.55 |"]
    assert sc.raw_markdown_tables(page("<p>| a | b | c |</p>"))  # a row without its delimiter row
    assert sc.raw_markdown_tables(page("<p>see | :---: | here</p>"))  # a delimiter row inside text
    assert sc.raw_markdown_tables(page("<p>see |—|—:| here</p>"))  # --- as Sphinx's smart dashes print it
    printed = OUTPUT.format("stream", "| a | b |\n|---|---|\n| 1 | 2 |")  # a table printed as text
    assert len(sc.raw_markdown_tables(page(PROSE, printed))) == 3


def test_rendered_tables_and_code_are_not_raw_tables():
    table = ("<table class='table'><thead><tr><th><p>item</p></th><th>ours</th></tr></thead>"
             "<tbody><tr><td><p>Table 1</p></td><td class='text-right'>98.55</td></tr></tbody></table>")
    source = CODE.format('lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * n]')
    inline = "<p>a table row is written <code class='docutils literal'><span>| a | b |</span></code></p>"
    assert sc.raw_markdown_tables(page(PROSE, table, source, HIDDEN_CODE.format("x = '|---|'"), inline)) == []
    assert sc.raw_markdown_tables(page("<p>pipes | in | prose are fine</p>")) == []


def test_bare_repr_is_found():
    result = OUTPUT.format("text_plain", "GeometryConfig(profile=&#39;small&#39;, seed=0, device=&#39;cpu&#39;)")
    assert sc.bare_reprs(page(PROSE, CODE.format("cfg"), result)) == ["GeometryConfig(profile='small', seed=0, device='cpu')"]
    for printed in ("&lt;Figure size 640x480 with 1 Axes&gt;", "[&lt;matplotlib.lines.Line2D at 0x7f3a2c1d0e50&gt;]",
                    "&lt;snnl.train.Trained object at 0x7f3a2c1d0e50&gt;", "Config(steps=200, lr=0.001)",
                    "{&#39;eps&#39;: 0.3, &#39;steps&#39;: 40}"):
        assert len(sc.bare_reprs(page(OUTPUT.format("stream", "a measured line\n" + printed)))) == 1, printed


def test_printed_sentences_are_not_reprs():
    printed = ("Measured (small profile, digits): mean test accuracy baseline 93.10%, entangled (alpha=10) "
               "92.40% (-0.70 points).\nfc1 1.96 -> 0.54 {fell}\nTable1(seed 0): done")
    assert sc.bare_reprs(page(PROSE, CODE.format("cfg = Config(a=1)\ncfg"), OUTPUT.format("stream", printed))) == []


def test_first_screen_without_prose_is_found():
    long_code = CODE.format("\n".join(f"x{i} = {i}" for i in range(60)))
    assert sc.first_screen_prose(page(long_code, PROSE)) == 0  # 60 lines of code before the text
    figure = '<div class="cell_output"><img src="data:image/png;base64,AAAA" alt="fig"></div>'
    assert sc.first_screen_prose(page(figure, figure, figure, PROSE)) == 0  # three figures first
    banner = '<div class="admonition note"><p>' + "Profile small, data digits, device cpu. " * 4 + "</p></div>"
    assert sc.first_screen_prose(page(banner)) == 0  # an aside is not the page's prose
    assert sc.first_screen_prose(page("<div class='cell_output'><p>" + PROSE + "</p></div>")) == 0  # an output


def test_first_screen_with_prose_passes():
    words = sc.first_screen_prose(page(PROSE))
    assert words == 32 >= sc.MIN_PROSE_WORDS
    # collapsed code (a "show code" toggle) takes one line, however long the code
    long_code = HIDDEN_CODE.format("\n".join(f"x{i} = {i}" for i in range(200)))
    assert sc.first_screen_prose(page(long_code, PROSE)) == words
    assert sc.first_screen_prose(page("<ul><li>" + PROSE[3:-4] + "</li></ul>")) == words  # a list counts


def test_broken_links_are_found(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><span id="x"></span><a href="#top">top</a>')
    (tmp_path / "sub" / "index.html").write_text('<a href="../a.html#x">back</a><a href="../a.html#gone">gone</a>')
    (tmp_path / "style.css").write_text("")
    (tmp_path / "_static").mkdir()  # the theme's assets: templates, not pages
    (tmp_path / "_static" / "macros.html").write_text('<link href="{{ pathto(\'_static/x.css\', 1) }}">')
    (tmp_path / "index.html").write_text(
        '<link rel="stylesheet" href="style.css"><a href="a.html">a</a><a href="a.html#x">x</a>'
        '<a href="sub/">sub</a><a href="missing.html">m</a><a href="#">top</a><a href="#nowhere">n</a>'
        '<a href="https://example.org/x.html">web</a><a href="mailto:a@b.c">mail</a><img src="fig%20one.png">'
        '<a href="../outside.html">out</a><script src="_static/gone.js"></script>')
    assert sorted(sc.broken_links(tmp_path)) == sorted([
        "index.html: missing.html (no such file)", "index.html: #nowhere (no such anchor)",
        "index.html: fig%20one.png (no such file)", "index.html: ../outside.html (outside the site)",
        "index.html: _static/gone.js (no such file)", "sub/index.html: ../a.html#gone (no such anchor)"])
    (tmp_path / "fig one.png").write_bytes(b"")
    assert "index.html: fig%20one.png (no such file)" not in sc.broken_links(tmp_path)


def test_code_shown_open_is_found():
    shown = CODE.format("# Parameters\nprofile = &quot;small&quot;")
    assert sc.shown_code(page(PROSE, HIDDEN_CODE.format("import snnl"), shown)) == ["# Parameters"]
    opened = HIDDEN_CODE.replace("<details ", "<details open ").format("import snnl")  # a toggle the reader opened
    assert sc.shown_code(page(opened)) == ["import snnl"]
    assert sc.shown_code(page(PROSE, HIDDEN_CODE.format("import snnl"), OUTPUT.format("stream", "1"))) == []


def test_option_after_a_dash_is_found():
    smart = "<p>Made by <code>python -m snnl.experiments.adversarial --out x</code> (also –dataset fashion-mnist)</p>"
    [found] = sc.option_dashes(page(PROSE, smart))
    assert "--out x (also –dataset fashion-m" in found
    assert len(sc.option_dashes(page("<p>run it with —profile paper</p>"))) == 1  # an em dash
    assert len(sc.option_dashes(page(CODE.format("python -m snnl train –alpha 10")))) == 1  # in code too
    assert len(sc.option_dashes(page(OUTPUT.format("stream", "rerun with\n–steps 100")))) == 1  # in an output


def test_dashes_that_are_not_options_pass():
    fine = ("<p>Figs. 10–12, a range 0.25–0.5, a pause — like this — and an–dash inside a word; "
            "the command <code>python -m snnl train --alpha 10 -q</code>; (also --dataset fashion-mnist)</p>"
            "<table><tr><td>–</td><td>0.5</td></tr></table>")
    assert sc.option_dashes(page(PROSE, fine)) == []


FIGURE = ('<figure class="align-default" id="fig-x"><img alt="{alt}" src="data:image/png;base64,AAAA">'
          '<figcaption><p>{number}<span class="caption-text">{text}</span></p></figcaption></figure>')
NUMBER = '<span class="caption-number">Fig. 3 </span>'


def test_figure_without_a_caption_is_found():
    bare = '<div class="cell_output"><img alt="bare" src="data:image/png;base64,AAAA"></div>'
    assert sc.uncaptioned_figures(page(PROSE, bare)) == ["bare"]
    unnumbered = FIGURE.format(alt="unnumbered", number="", text="Entangling lowers accuracy.")
    empty = FIGURE.format(alt="empty", number=NUMBER, text=" ")
    no_caption = '<figure><img src="_images/x.png"></figure>'
    assert sc.uncaptioned_figures(page(unnumbered, empty, no_caption)) == ["unnumbered", "empty", "_images/x.png"]


def test_figure_with_a_numbered_caption_passes():
    good = FIGURE.format(alt="good", number=NUMBER, text="Entangling lowers test accuracy on every dataset.")
    assert sc.uncaptioned_figures(page(PROSE, good)) == []
    assert sc.uncaptioned_figures(page(PROSE)) == []  # no picture, nothing to caption
    outside = ('<html><body><nav><img src="logo.png"></nav><article class="bd-article">' + PROSE
               + "</article></body></html>")
    assert sc.uncaptioned_figures(outside) == []  # the theme's pictures are not the page's figures


# ---- the checks of the laid-out page: measurements, then made-up pages in Chromium -------------------
def measured(tables=(), badges=(), left=100.0, right=700.0, screen=760):
    return {"left": left, "right": right, "screen": screen, "badges": [list(b) for b in badges],
            "tables": [{"head": h, "left": left, "right": min(right, left + w), "content": w, "scroller": sc_}
                       for h, w, sc_ in tables]}


def test_wide_tables_from_measurements():
    assert sc.wide_tables(measured([("item", 600, None), ("fits", 400, None)])) == []
    [wide] = sc.wide_tables(measured([("item", 900, None)]))
    assert wide == "table 'item': 900 px wide from 0 px, in a column of 600 px, no scroll container"
    assert sc.wide_tables(measured([("item", 900, [100, 700])])) == []  # it scrolls inside the column
    assert len(sc.wide_tables(measured([("item", 900, [100, 1000])]))) == 1  # its scroller widens the page


def test_first_screen_badges_from_measurements():
    assert sc.first_screen_badges(measured(badges=[(300, 320), (700, 720), (1500, 1520)])) == 2
    assert sc.first_screen_badges(measured(badges=[(900, 920)])) == 0
    assert sc.first_screen_badges(measured()) == 0


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((b for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        (pytest.fail if os.environ.get("SNNL_SITE_CHECK") == "1" else pytest.skip)("no headless Chromium installed")
    return found


def laid_out(tmp_path, body: str, browser: str) -> dict:
    """:func:`site_checks.layout` of a page whose article is a column of 600 px."""
    page = ('<html><head><title>t</title><style>body { margin: 0; font: 16px sans-serif; } '
            "article { width: 600px; margin-left: 100px; } th, td { white-space: nowrap; padding: 4px; }</style>"
            f'</head><body><article class="bd-article"><h1>Title</h1>{body}</article></body></html>')
    return sc.layout(page, tmp_path.as_uri() + "/", browser, FLAGS)


WIDE = "<table><tr>" + "<th>a wide header cell</th>" * 10 + "</tr><tr>" + "<td>0.123</td>" * 10 + "</tr></table>"
NARROW = "<table><tr><th>item</th><th>ours</th></tr><tr><td>Fig. 1</td><td>0.25</td></tr></table>"


@pytest.mark.slow
def test_table_wider_than_its_column_is_found_in_chromium(tmp_path, chromium):
    [wide] = sc.wide_tables(laid_out(tmp_path, PROSE + WIDE + NARROW, chromium))
    assert wide.startswith("table 'a wide header cell'") and wide.endswith("no scroll container")
    wider_scroller = f'<div style="overflow-x: auto; width: 1400px">{WIDE}</div>'
    assert len(sc.wide_tables(laid_out(tmp_path, wider_scroller, chromium))) == 1


@pytest.mark.slow
def test_table_that_scrolls_inside_its_column_passes_in_chromium(tmp_path, chromium):
    theme = f'<div class="pst-scrollable-table-container" style="overflow-x: auto">{WIDE}</div>'
    block = WIDE.replace("<table>", '<table style="display: block; overflow-x: auto">')
    m = laid_out(tmp_path, PROSE + theme + block + NARROW, chromium)
    assert len(m["tables"]) == 3 and m["right"] - m["left"] == pytest.approx(600, abs=1)
    assert sc.wide_tables(m) == []


BADGE = '<span class="snnl-status snnl-status-ok" title="qualitative claim holds">holds</span>'


@pytest.mark.slow
def test_page_without_badges_in_the_first_screen_is_found_in_chromium(tmp_path, chromium):
    late = PROSE + '<div style="height: 2000px"></div><p>Fig. 1: ' + BADGE + "</p>"
    assert sc.first_screen_badges(laid_out(tmp_path, late, chromium)) == 0
    collapsed = PROSE + "<details><summary>At a glance</summary><p>" + BADGE + "</p></details>"
    assert sc.first_screen_badges(laid_out(tmp_path, collapsed, chromium)) == 0
    assert sc.first_screen_badges(laid_out(tmp_path, PROSE, chromium)) == 0


@pytest.mark.slow
def test_page_with_badges_in_the_first_screen_passes_in_chromium(tmp_path, chromium):
    glance = PROSE + "<h2>At a glance</h2><table><tr><td>Fig. 1</td><td>" + BADGE + "</td></tr>" \
        "<tr><td>Fig. 2</td><td>" + BADGE.replace("ok", "fail") + "</td></tr></table>"
    assert sc.first_screen_badges(laid_out(tmp_path, glance, chromium)) == 2
