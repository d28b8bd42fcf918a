"""The reader-facing checks of ``make site-check`` (tests/site_checks.py) on small pages: each
finds its defect, and passes the same page without it. No browser, no built site."""

from __future__ import annotations

import site_checks as sc

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
