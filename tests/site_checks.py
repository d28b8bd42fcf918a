"""What a reader sees on a built page, read from its HTML (a file of the site or Chromium's DOM of
it) without a browser: the reader-facing checks of ``make site-check`` (tests/test_site.py). Each
is shown able to fail on a small page with the defect in tests/test_site_checks.py.

* :func:`raw_markdown_tables` -- Markdown table syntax left as text (``|---|``, a paragraph of
  ``| ... |``): a table the build did not render;
* :func:`bare_reprs` -- the repr of a Python object as an output (a cell that ends in an
  expression, ``<... object at 0x...>``, ``Config(a=1, ...)``, ``{'key': ...}``);
* :func:`first_screen_prose` -- the words of prose a reader sees before scrolling;
* :func:`shown_code` -- cells whose source the page shows open (not behind a "show code" toggle);
* :func:`broken_links` -- links between the site's files whose file or anchor does not exist;
* :func:`option_dashes` -- an en or em dash right before an option name (``–dataset``): a command
  line that fails when copied (Sphinx's smart dashes make ``–`` of ``--``);
* :func:`uncaptioned_figures` -- a picture that is not a figure with a numbered caption.

Pages are parsed with the standard library's ``html.parser`` into a small tree; a closed
``<details>`` (a collapsed cell: "show code") shows only its summary.

Two checks need the page laid out by a browser: :func:`layout` renders a copy of the page with
:data:`LAYOUT_SCRIPT` in headless Chromium (a window of :data:`WINDOW` pixels), which measures the
tables and the status badges of the main content; from those measurements,

* :func:`wide_tables` -- a table wider than the page's column that is not inside a scroll
  container (its right part is cut off, or it widens the page);
* :func:`first_screen_badges` -- the status badges (``snnl-status``) a reader sees without scrolling.
"""

from __future__ import annotations

import html as html_lib
import json
import math
import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
BLOCK = {"address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "figcaption",
         "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
         "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"}
INVISIBLE = {"script", "style", "template", "head", "noscript", "svg", "mjx-assistive-mml"}

# Markdown table syntax: a delimiter row (|---|, | :---: |; with smart dashes on, which the book turns
# off in _config.yml, Sphinx would make |—| of |---|), or a block that is a row of cells
TABLE_RULE = re.compile(r"\|\s*:?(?:-{3,}|[—–][-—–]*):?\s*\|")
# lines of output that are an object's repr rather than something written for a reader
REPR_LINE = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>"  # object.__repr__
                       r"|^<(?:Figure|Axes|matplotlib)\b"  # a matplotlib object
                       r"|^\[?<[\w.]+ at 0x[0-9a-fA-F]+>"  # e.g. [<matplotlib.lines.Line2D at 0x...>]
                       r"|^[A-Z]\w*\(\w+=.*\)\s*$"  # a dataclass / namedtuple: Config(a=1, ...)
                       r"|^\{'[^']*': .*\}\s*$")  # a dict
SCREEN_LINES = 36  # lines of text in a first screen (about 900 px of a 1280-px-wide window)
MIN_PROSE_WORDS = 25  # words of prose a first screen needs


class Node:
    """An element: ``tag``, ``attrs`` (dict), ``children`` (Nodes and strings)."""

    def __init__(self, tag: str, attrs: dict, parent: Node | None = None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        """This element and every element below it, in document order."""
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):  # close up to the matching element, if open
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    """The page's tree (the document node)."""
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder.root


def main_content(root: Node) -> Node:
    """The page's article (Sphinx themes: ``<article class="bd-article">``), else its body."""
    for tag, cls in (("article", "bd-article"), ("main", None), ("body", None)):
        for node in root.iter():
            if node.tag == tag and (cls is None or cls in node.classes):
                return node
    return root


def _hidden(node: Node) -> bool:
    return node.tag in INVISIBLE or "hidden" in node.attrs or node.attrs.get("aria-hidden") == "true"


def _blocks(node: Node, where: frozenset = frozenset()):
    """``(text, where, tag)`` for every visible block of text below ``node``, in document order:
    ``where`` holds ``code`` (a cell's source or a literal block), ``output`` (an executed cell's
    output), ``table``, ``aside`` (admonition, navigation), ``pre``; ``tag`` is the block's tag
    (``img`` for a picture, ``summary`` for a collapsed element)."""
    buf: list[str] = []

    def flush(tag):
        lines = "".join(buf).splitlines() if "pre" in where else ["".join(buf)]  # pre keeps its lines
        text = "\n".join(" ".join(line.split()) for line in lines if line.strip())
        buf.clear()
        return (text, where, tag) if text else None

    for child in node.children:
        if isinstance(child, str):
            buf.append(child)
            continue
        if _hidden(child):
            continue
        if child.tag == "img":
            if (b := flush(node.tag)):
                yield b
            yield (child.attrs.get("alt", ""), where, "img")
            continue
        if child.tag == "code" and "pre" not in where:  # inline code: written as code on purpose
            buf.append(" ")
            continue
        if child.tag in BLOCK or child.tag == "br":
            if (b := flush(node.tag)):
                yield b
            if child.tag == "br":
                continue
            yield from _blocks(child, where | _context(child))
            continue
        yield from _inline(child, buf, where)
    if (b := flush(node.tag)):
        yield b


def _inline(node: Node, buf: list, where):
    """Text of an inline element into ``buf``; blocks nested in it (rare) are yielded."""
    for child in node.children:
        if isinstance(child, str):
            buf.append(child)
        elif _hidden(child) or (child.tag == "code" and "pre" not in where):
            buf.append(" ")
        elif child.tag in BLOCK or child.tag == "img":
            wrapper = Node("span", {})
            wrapper.children = [child]
            yield from _blocks(wrapper, where)
        else:
            yield from _inline(child, buf, where)


def _context(node: Node) -> frozenset:
    c, out = node.classes, set()
    if "cell_input" in c or (node.tag == "div" and any(k.startswith("highlight-") for k in c) and "output" not in c):
        out.add("code")
    if "cell_output" in c or "output" in c:
        out.add("output")
    if node.tag == "table":
        out.add("table")
    if node.tag in ("aside", "nav") or "admonition" in c or "toctree-wrapper" in c:
        out.add("aside")
    if node.tag == "pre":
        out.add("pre")
    if node.tag == "details" and "open" not in node.attrs:
        out.add("closed")
    return frozenset(out)


def _visible_blocks(root: Node):
    """The blocks of :func:`_blocks` a reader sees without clicking: a closed ``<details>`` shows
    its summary only."""
    for text, where, tag in _blocks(root):
        if "closed" in where and tag != "summary":
            continue
        yield text, where, tag


def raw_markdown_tables(page: str) -> list[str]:
    """Blocks of the page's main content that are Markdown table syntax left as text (not in code
    a reader is meant to see as code)."""
    found = []
    for text, where, _ in _visible_blocks(main_content(parse(page))):
        if "code" in where:
            continue
        for line in [text] if "pre" not in where else text.splitlines() or [text]:
            s = line.strip()
            if TABLE_RULE.search(s) or (s.startswith("|") and s.endswith("|") and s.count("|") >= 3):
                found.append(s[:120])
    return found


def bare_reprs(page: str) -> list[str]:
    """Outputs of executed cells that are an object's repr: every ``text/plain`` result (MyST-NB:
    ``output text_plain``, what a cell ending in an expression shows), and printed lines that
    look like a repr (:data:`REPR_LINE`)."""
    found = []
    for node in main_content(parse(page)).iter():
        c = node.classes
        if "output" not in c or _hidden(node):
            continue
        text = html_lib.unescape(node.text()).strip()
        if "text_plain" in c and text:
            found.append(text.splitlines()[0][:120])
        elif "stream" in c:
            found += [line.strip()[:120] for line in text.splitlines() if REPR_LINE.search(line.strip())]
    return found


def shown_code(page: str) -> list[str]:
    """The first line of every executed cell's source that the page shows open (MyST-NB's
    ``cell_input``, not inside a closed ``<details>``: the "show code" toggle of ``hide-input``)."""
    found = []

    def walk(node: Node, closed: bool):
        for child in node.children:
            if isinstance(child, str) or _hidden(child):
                continue
            if "cell_input" in child.classes and not closed:
                found.append((html_lib.unescape(child.text()).strip().splitlines() or [""])[0][:120])
            walk(child, closed or (child.tag == "details" and "open" not in child.attrs))

    walk(main_content(parse(page)), False)
    return found


def first_screen_prose(page: str, lines: int = SCREEN_LINES) -> int:
    """Words of prose (paragraphs and list items of the text, not code, outputs, tables or
    asides) within the first ``lines`` lines of the page's main content, by an estimate of the
    height of each block: text at 100 characters a line, a line per row of a table or of
    preformatted text, 15 lines per picture, 3 for the title."""
    used, words = 0.0, 0
    for text, where, tag in _visible_blocks(main_content(parse(page))):
        if used >= lines:
            break
        if tag == "img":
            used += 15
            continue
        if "pre" in where:
            used += text.count("\n") + 1.5
            continue
        if tag == "h1":
            used += 3
        elif "table" in where:
            used += 0.75  # a cell: two per row on average
        else:
            used += math.ceil(len(text) / 100) + 0.5
        if tag in ("p", "li", "dd", "dt") and not where & {"code", "output", "table", "aside"}:
            words += len(re.findall(r"[A-Za-z][A-Za-z'-]+", text))
    return words


def _ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        text = path.read_text(errors="replace")
        cache[path] = {html_lib.unescape(v) for v in re.findall(r'\s(?:id|name)="([^"]*)"', text)}
    return cache[path]


def broken_links(site: Path) -> list[str]:
    """Links of every ``.html`` file under ``site`` to a file of the site (relative ``href`` of
    ``<a>`` and ``<link>``, ``src`` of ``<img>`` and ``<script>``) whose file is missing, lies
    outside the site, or lacks the ``#anchor`` named. Links with a scheme (``https:``,
    ``mailto:``, ...) are not followed: the check is offline. Files under ``_static/`` are the
    theme's assets (some are templates), not pages."""
    site, bad, cache = Path(site).resolve(), [], {}
    for page in sorted(p for p in site.rglob("*.html") if p.relative_to(site).parts[0] != "_static"):
        text = page.read_text(errors="replace")
        for ref in re.findall(r'<(?:a|link|img|script)\b[^>]*?\s(?:href|src)="([^"]*)"', text):
            ref = html_lib.unescape(ref)
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith("//") or not ref or ref == "#":
                continue
            where = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if where.is_dir():
                where = where / "index.html"
            name = f"{page.relative_to(site)}: {ref}"
            if site not in where.parents and where != site:
                bad.append(f"{name} (outside the site)")
            elif not where.is_file():
                bad.append(f"{name} (no such file)")
            elif parts.fragment and where.suffix == ".html" and unquote(parts.fragment) not in _ids(where, cache):
                bad.append(f"{name} (no such anchor)")
    return bad


# an en or em dash where a command line has "--" or "-": before an option's name, at the start of a
# word ("(also –dataset fashion-mnist)"); a dash between words or numbers ("10–12") is not one
OPTION_DASH = re.compile(r"(?:^|(?<=[\s(\[{'\"`“‘]))[–—]{1,2}[A-Za-z][\w-]*")


def _text(node: Node, out: list) -> None:
    """The visible text below ``node`` (code included), blocks on lines of their own."""
    for child in node.children:
        if isinstance(child, str):
            out.append(child)
        elif not _hidden(child):
            block = child.tag in BLOCK or child.tag == "br"
            if block:
                out.append("\n")
            _text(child, out)
            if block:
                out.append("\n")


def option_dashes(page: str) -> list[str]:
    """Every option name of the page's main content (prose, code and outputs alike) written with an
    en or em dash instead of ``--`` or ``-``, with a little of its context."""
    out: list[str] = []
    _text(main_content(parse(page)), out)
    text = html_lib.unescape("".join(out))
    return [" ".join(text[max(0, m.start() - 30):m.end() + 10].split()) for m in OPTION_DASH.finditer(text)]


def uncaptioned_figures(page: str) -> list[str]:
    """Pictures of the page's main content that are not in a ``<figure>`` with a numbered caption
    (Sphinx: ``<figcaption>`` holding ``caption-number`` "Fig. N" and a non-empty
    ``caption-text``), by their ``alt`` (or the start of their ``src``)."""
    found = []
    for node in main_content(parse(page)).iter():
        if node.tag != "img":
            continue
        up, figure, hidden = node.parent, None, False
        while up is not None:
            hidden = hidden or _hidden(up)
            if up.tag == "figure" and figure is None:
                figure = up
            up = up.parent
        if hidden:
            continue
        caption = next((n for n in figure.iter() if n.tag == "figcaption"), None) if figure else None
        number = caption and next((n for n in caption.iter() if "caption-number" in n.classes), None)
        text = caption and next((n for n in caption.iter() if "caption-text" in n.classes), None)
        if not (number and number.text().strip() and text and text.text().strip()):
            found.append((node.attrs.get("alt") or node.attrs.get("src", ""))[:80])
    return found


# ---- checks on the page as laid out by a browser -------------------------------------------------
WINDOW = (1280, 900)  # a reader's window: width, height (the first screen) in CSS pixels
LAYOUT_ATTRIBUTE = "data-snnl-layout"
# Measures the main content once the page has loaded (and MathJax had time to typeset) and writes
# the measurements, as JSON, into an attribute of <html> for --dump-dom: the column's edges, per
# table its edges, the width of its content and the edges of the scroll container it is in (the
# nearest element with overflow-x auto or scroll, the table itself included), per visible status
# badge its top and bottom, and the height of the window.
LAYOUT_SCRIPT = """
window.addEventListener("load", function () { setTimeout(function () {
  var art = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  var cs = getComputedStyle(art), box = art.getBoundingClientRect();
  var out = {left: box.left + parseFloat(cs.paddingLeft), right: box.right - parseFloat(cs.paddingRight),
             screen: window.innerHeight, tables: [], badges: []};
  art.querySelectorAll("table").forEach(function (t) {
    var r = t.getBoundingClientRect();
    if (!r.width || !r.height) return;
    var scroller = null;
    for (var a = t; a && a !== document.documentElement; a = a.parentElement) {
      var ox = getComputedStyle(a).overflowX;
      if (ox === "auto" || ox === "scroll") { scroller = a; break; }
    }
    var s = scroller ? scroller.getBoundingClientRect() : null;
    var first = t.querySelector("th, td");
    out.tables.push({head: first ? first.textContent.trim().slice(0, 40) : "", left: r.left, right: r.right,
                     content: Math.max(r.width, t.scrollWidth), scroller: s ? [s.left, s.right] : null});
  });
  art.querySelectorAll(".snnl-status").forEach(function (b) {
    var r = b.getBoundingClientRect(), closed = b.closest("details:not([open])");
    if (closed && !b.closest("summary")) return;  // in a collapsed element
    if (b.checkVisibility && !b.checkVisibility({visibilityProperty: true, opacityProperty: true})) return;
    if (r.width && r.height) out.badges.push([r.top, r.bottom]);
  });
  document.documentElement.setAttribute("%s", JSON.stringify(out));
}, 2000); });
""" % LAYOUT_ATTRIBUTE


def with_layout_script(page: str, base: str) -> str:
    """``page`` with :data:`LAYOUT_SCRIPT` and a ``<base href=base>`` (the folder the page was built
    in, so that its styles and scripts load from a copy elsewhere) at the start of its head."""
    inject = f'<base href="{html_lib.escape(base)}"><script>{LAYOUT_SCRIPT}</script>'
    m = re.search(r"<head\b[^>]*>", page, re.I)
    return page[:m.end()] + inject + page[m.end():] if m else inject + page


def layout(page: str, base: str, browser: str, flags=(), window=WINDOW, timeout: int = 180) -> dict:
    """The measurements of :data:`LAYOUT_SCRIPT` on ``page`` (HTML text whose relative links
    resolve against the URL ``base``), laid out in ``browser`` (headless Chromium with ``flags``)
    in a window of ``window`` pixels. Raises RuntimeError when the script did not report."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(with_layout_script(page, base))
        cmd = [browser, *flags, f"--user-data-dir={tmp}/profile", f"--window-size={window[0]},{window[1]}",
               "--dump-dom", copy.as_uri()]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    m = re.search(LAYOUT_ATTRIBUTE + r'="([^"]*)"', dom)
    if not m:
        raise RuntimeError(f"the layout script did not report (Chromium printed {len(dom)} characters)")
    return json.loads(html_lib.unescape(m.group(1)))


def wide_tables(measured: dict, slack: float = 1.0) -> list[str]:
    """Tables of :func:`layout`'s measurements whose content reaches past the right edge of the
    column and that do not scroll inside it (no scroll container, or one wider than the column):
    a reader sees them cut off, or the page scrolls sideways."""
    found = []
    for t in measured["tables"]:
        if t["left"] + t["content"] <= measured["right"] + slack:
            continue
        if t["scroller"] is not None and t["scroller"][1] <= measured["right"] + slack:
            continue
        found.append(f"table '{t['head']}': {t['content']:.0f} px wide from {t['left'] - measured['left']:.0f} px, "
                     f"in a column of {measured['right'] - measured['left']:.0f} px, "
                     + ("its scroll container is wider than the column" if t["scroller"] else "no scroll container"))
    return found


def first_screen_badges(measured: dict) -> int:
    """How many status badges of :func:`layout`'s measurements a reader sees in the first screen
    (the window's height, before scrolling)."""
    return sum(1 for top, bottom in measured["badges"] if bottom > 0 and top < measured["screen"])
