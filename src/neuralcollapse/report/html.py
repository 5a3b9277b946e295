"""The report page: one self-contained HTML document, no scripts, no external requests.

Images arrive as bytes and are embedded as base64 ``data:`` URIs. A Content-Security-Policy
forbids every fetch but inline styles and ``data:`` images, so a page that tried to load
anything from elsewhere would be blocked by the browser, not silently go online.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; "
    "base-uri 'none'"
)
MIME = {"png": "image/png", "svg": "image/svg+xml"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 0 1.5em 3em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
p.note { color: #6b4e00; background: #fff7e0; border-left: 4px solid #E69F00;
         padding: 0.3em 0.7em; margin: 0.4em 0; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.meta { color: #555; font-size: 0.9em; }
"""


@dataclass
class Section:
    """One ``<section>``: a heading and its body, already HTML."""

    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """A one-line note, e.g. why a figure is missing."""
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (
            f'<section id="{self.anchor}">\n<h2>{html.escape(self.title)}</h2>\n{body}\n</section>'
        )


def paragraph(text: str, *, css_class: str | None = None) -> str:
    """A ``<p>`` of plain text (escaped), optionally with a CSS class."""
    attribute = f' class="{html.escape(css_class, quote=True)}"' if css_class else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def figure(data: bytes, image_format: str, alt: str, caption: str) -> str:
    """An ``<figure>`` with the image embedded as a data URI."""
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:{MIME[image_format]};base64,{encoded}" '
        f'alt="{html.escape(alt, quote=True)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table; every cell is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def preformatted(text: str, summary: str, *, open_: bool = False) -> str:
    """Collapsible preformatted text (a config file), unfolded when ``open_``."""
    state = " open" if open_ else ""
    return (
        f"<details{state}><summary>{html.escape(summary)}</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def page(title: str, meta: str, sections: Sequence[Section]) -> str:
    """The whole document."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections if s.parts)
    body = "\n".join(s.render() for s in sections if s.parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(meta)}</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""
