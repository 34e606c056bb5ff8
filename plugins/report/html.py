"""Self-contained HTML from the report's Markdown: headings, tables, lists, inline code and bold, with every image
inlined as a data URI (the file opens anywhere, offline, without the PNGs beside it)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Sequence

STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}")


def inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _table(lines: Sequence[str]) -> str:
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    head, rows = cells[0], cells[2:]
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</tbody></table>")


def to_html(md: str, figures: Sequence[tuple[str, Path]], title: str = "LiteDA report") -> str:
    """``md`` rendered, then ``figures`` (caption, PNG path) inlined under a "Plots" heading."""
    body, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            body.append(_table(lines[i:j]))
            i = j
            continue
        if ln.startswith("#"):
            level = len(ln) - len(ln.lstrip("#"))
            body.append(f"<h{level}>{html.escape(ln.lstrip('# '))}</h{level}>")
        elif ln.startswith("- "):
            body.append(f"<li>{inline(ln[2:])}</li>")
        elif ln.strip():
            body.append(f"<p>{inline(ln)}</p>")
        i += 1
    if figures:
        body.append("<h2>Plots</h2>")
        body += [img_tag(p, caption) for caption, p in figures]
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
