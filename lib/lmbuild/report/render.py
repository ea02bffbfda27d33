"""Write the report, held as a list of blocks, as markdown (images linked as img/NAME.png) and as
one self-contained HTML page (images inlined as base64 data: URIs, inline CSS, no scripts, no
external URL), every piece of text escaped.

Blocks: ("h1"|"h2"|"p", text), ("ul", [text...]), ("table", header, rows), ("img", Fig).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .6em}th{background:#f4f4f4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}ul{padding-left:1.4em}
""".strip()

MISSING = "—"


def fmt(value: Any, digits: int = 4) -> str:
    """A metric for a table cell: integers as they are, floats to `digits` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # no exponent for large values: 11695.8 -> 11696, not 1.17e+04
        return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
    return str(value)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    out: list[str] = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}\n")
        elif kind == "h2":
            out.append(f"## {rest[0]}\n")
        elif kind == "p":
            out.append(f"{rest[0]}\n")
        elif kind == "ul":
            out.append("".join(f"- {item}\n" for item in rest[0]))
        elif kind == "table":
            header, rows = rest
            lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
                     "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
        elif kind == "img":
            fig = rest[0]
            out.append(f"![{fig.title}](img/{fig.name}.png)\n\n*{fig.title}*\n")
    return "\n".join(out)


def to_html(blocks: list[tuple], title: str) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title>", f"<style>\n{CSS}\n</style>", "</head>", "<body>"]
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{esc(rest[0])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in rest[0]) + "</ul>")
        elif kind == "table":
            header, rows = rest
            out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>")
            out.append("<tbody>")
            for row in rows:
                cells = [f"<td>{esc(row[0])}</td>"] + [f'<td class="n">{esc(c)}</td>' for c in row[1:]]
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            fig = rest[0]
            data = base64.b64encode(fig.png).decode("ascii")
            out.append(f'<figure id="{esc(fig.name)}"><img src="data:image/png;base64,{data}" '
                       f'alt="{esc(fig.title)}"><figcaption>{esc(fig.title)}</figcaption></figure>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
