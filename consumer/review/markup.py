"""HTML building blocks of the review page: escaped text, tables, figures, sections."""

from __future__ import annotations

import html as _html
from typing import Iterable, Sequence


class Markup(str):
    """HTML that is already safe: inserted as it is."""


def text(value) -> Markup:
    """``value`` as escaped HTML text (Markup passes through)."""
    return value if isinstance(value, Markup) else Markup(_html.escape(str(value), quote=True))


def tag(name: str, content="", **attributes) -> Markup:
    attrs = "".join(f' {k.rstrip("_").replace("_", "-")}="{_html.escape(str(v), quote=True)}"'
                    for k, v in attributes.items() if v is not None and v is not False)
    return Markup(f"<{name}{attrs}>{text(content)}</{name}>")


def join(parts: Iterable) -> Markup:
    return Markup("".join(text(p) for p in parts))


def table(header: Sequence[str] | None, rows: Iterable[Sequence], numeric: Sequence[int] = (), cls: str | None = None,
          table_id: str | None = None, scroll: bool = False, widths: Sequence[float] = (), **attributes) -> Markup:
    """A table; columns listed in ``numeric`` are right-aligned.

    Cell closing tags are left out (valid HTML, less to send).

    ``widths`` (in em, one per column) fix the layout, so that the browser need not measure every cell of a long table.
    """
    numeric = set(numeric)
    head = ""
    if widths:
        head = "<colgroup>" + "".join(f'<col style="width:{w:g}em">' for w in widths) + "</colgroup>"
        attributes = {"style": f"width:{sum(widths):g}em", **attributes}
    if header:
        head += "<thead><tr>" + "".join(
            f'<th{" class=n" if k in numeric else ""} scope=col>{text(h)}</th>' for k, h in enumerate(header)) \
            + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td{' class=n' if k in numeric else ''}>{text(v)}" for k, v in enumerate(row))
                   for row in rows)
    extra = "".join(f' {k.replace("_", "-")}="{_html.escape(str(v), quote=True)}"' for k, v in attributes.items())
    if cls:
        extra = f' class="{cls}"' + extra
    if table_id:
        extra = f' id="{table_id}"' + extra
    out = (f"<table{extra}>"
           f"{head}<tbody>{body}</tbody></table>")
    return Markup(f'<div class="scroll">{out}</div>' if scroll else out)


def facts(rows: Iterable[tuple[str, object]]) -> Markup:
    """A two-column table of named facts (the name as a row header)."""
    return Markup('<table class="facts"><tbody>' + "".join(
        f"<tr><th scope=row>{text(name)}</th><td>{text(value)}</td></tr>" for name, value in rows) + "</tbody></table>")


def figure(svg: str, caption: str, small: bool = False) -> Markup:
    return Markup(f'<figure{" class=small" if small else ""}>{svg}<figcaption>{text(caption)}</figcaption></figure>')


def section(anchor: str, title: str, *parts) -> Markup:
    return Markup(f'<section id="{anchor}"><h2>{text(title)}</h2>{join(p for p in parts if p)}</section>')


def paragraph(content, cls: str | None = None) -> Markup:
    return tag("p", content, class_=cls)
