"""Markdown tables of the paper items' numbers."""

from __future__ import annotations


# ---- tables ------------------------------------------------------------------------------------
def markdown_table(rows: list[dict]) -> str:
    """A list of dicts (same keys) as a Markdown table; floats with 3 decimals (4 significant digits
    from 1e5 on, e.g. a loss that blew up: 1.292e+09), columns of numbers right-aligned."""
    keys = list(rows[0])
    cell = lambda v: (f"{v:.3f}" if abs(v) < 1e5 else f"{v:.4g}") if isinstance(v, float) else \
        ("-" if v is None else str(v))
    number = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    lines = ["| " + " | ".join(keys) + " |", "|" + "".join("---:|" if all(number(r[k]) for r in rows) else "---|"
                                                           for k in keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])
