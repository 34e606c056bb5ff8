"""``report.pdf``: the written report's blocks (``document.py``) laid out on A4 pages with fpdf2.

fpdf2 is pure Python and writes text, tables and PNGs with automatic page breaks; the text is set in DejaVu Sans,
which matplotlib ships, so ±, → and ≤ print without a system font. The report stays within ``MAX_PAGES``: when it
runs longer, the figures ranked last are left out and the pages laid out again.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from ..utils import atomic_write_bytes
from .document import Block

MAX_PAGES = 5
MARGIN = 15.0            # mm
FONT = "DejaVu"
MAX_FIGURE_HEIGHT = 125.0  # mm: a grid never takes a whole page, its caption stays beside it
DEFAULT_DPI = 110.0        # a PNG that does not say its resolution: the report's own
TABLE_FONT, MIN_TABLE_FONT = 7.5, 5.5  # pt
CELL_PADDING = 0.8         # mm
MIN_LABEL_WIDTH = 32.0     # mm
BOLD_WIDTH = 1.15          # headings are set in bold: wider than the regular text they are measured in


def _font_files() -> dict[str, Path]:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": ttf / "DejaVuSans.ttf", "B": ttf / "DejaVuSans-Bold.ttf", "I": ttf / "DejaVuSans-Oblique.ttf"}


def _col_widths(pdf, table, text_w: float) -> list[float]:
    """Column widths (mm) that keep every number on one line: each value column as wide as its widest cell (a
    heading may wrap at its spaces), the row labels the rest. Wraps labels rather than numbers."""
    header, body = table
    pad = 2 * CELL_PADDING + 1.0
    widths = [0.0]
    for j in range(1, len(header)):
        cells = [str(r[j]) for r in body if j < len(r)]
        words = str(header[j]).split() or [""]
        widths.append(pad + max([pdf.get_string_width(c) for c in cells]
                                + [BOLD_WIDTH * pdf.get_string_width(w) for w in words]))
    widths[0] = max(text_w - sum(widths) - 0.1, MIN_LABEL_WIDTH)  # 0.1: rounding, never past the margin
    return widths


def _table_font(pdf, table, text_w: float) -> float:
    """The largest font size (down to ``MIN_TABLE_FONT``) at which the value columns leave the labels room."""
    size = TABLE_FONT
    while size > MIN_TABLE_FONT:
        pdf.set_font(FONT, "", size)
        if sum(_col_widths(pdf, table, text_w)) <= text_w:
            break
        size -= 0.5
    return size


def _render(blocks: Sequence[Block]) -> tuple[bytes, int]:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    class Report(FPDF):
        def footer(self):
            self.set_y(-10)
            self.set_font(FONT, "", 7)
            self.set_text_color(120)
            self.cell(0, 5, f"{self.page_no()}", align="C")
            self.set_text_color(0)

    pdf = Report(format="A4", unit="mm")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=14)
    for style, path in _font_files().items():
        pdf.add_font(FONT, style, str(path))
    pdf.add_page()
    text_w = pdf.epw

    def caption(text: str) -> None:
        pdf.set_font(FONT, "I", 7.5)
        pdf.multi_cell(0, 3.6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    for b in blocks:
        if b.kind == "title":
            pdf.set_font(FONT, "B", 15)
            pdf.multi_cell(0, 7, b.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif b.kind == "heading":
            if pdf.get_y() > pdf.h - 40:  # a heading at the foot of a page goes with its section
                pdf.add_page()
            pdf.ln(2)
            pdf.set_font(FONT, "B", 11.5)
            pdf.multi_cell(0, 6, b.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif b.kind == "text":
            pdf.set_font(FONT, "", 9)
            pdf.multi_cell(0, 4.4, b.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
        elif b.kind == "bullets":
            pdf.set_font(FONT, "", 9)
            for item in b.items:
                pdf.set_x(MARGIN)
                pdf.cell(4, 4.4, "•")
                pdf.multi_cell(0, 4.4, item, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(0.6)
            pdf.ln(1)
        elif b.kind == "table":
            header, body = b.table
            pdf.set_font(FONT, "", _table_font(pdf, b.table, text_w))
            widths = _col_widths(pdf, b.table, text_w)
            aligns = ["LEFT"] + ["RIGHT"] * (len(header) - 1)
            with pdf.table(col_widths=widths, text_align=aligns, line_height=3.4, width=min(sum(widths), text_w),
                           headings_style=FontFace(emphasis="BOLD", fill_color=(232, 232, 232)),
                           borders_layout="HORIZONTAL_LINES", padding=CELL_PADDING) as t:
                for row in [header, *body]:
                    cells = t.row()
                    for cell in row:
                        cells.cell(str(cell))
            pdf.ln(1)
            caption(b.text)
        elif b.kind == "figure":
            from PIL import Image

            with Image.open(b.path) as im:
                px_w, px_h = im.size
                dpi = float((im.info.get("dpi") or (DEFAULT_DPI,))[0]) or DEFAULT_DPI
            w = min(text_w, px_w / dpi * 25.4)  # the figure's own size, narrowed to the text width
            h = w * px_h / px_w
            if h > MAX_FIGURE_HEIGHT:
                h, w = MAX_FIGURE_HEIGHT, MAX_FIGURE_HEIGHT * px_w / px_h
            if pdf.get_y() + h + 10 > pdf.h - 14:
                pdf.add_page()
            pdf.image(str(b.path), x=MARGIN + (text_w - w) / 2, w=w, h=h)
            pdf.ln(1)
            caption(b.text)
        elif b.kind == "page_break":
            if pdf.get_y() > MARGIN + 1:
                pdf.add_page()
    buf = io.BytesIO()
    pdf.output(buf)
    return buf.getvalue(), pdf.page_no()


def write_pdf(blocks: Sequence[Block], path: Path) -> int:
    """Lay the blocks out and write ``path`` (atomically); returns its page count. Figures are left out from the
    highest rank down while the report runs past ``MAX_PAGES``. ImportError: fpdf2 is not installed."""
    import fpdf  # noqa: F401  (fails here, before any layout, when the library is missing)

    blocks = list(blocks)
    data, pages = _render(blocks)
    while pages > MAX_PAGES and any(b.rank for b in blocks):
        worst = max(b.rank for b in blocks)
        blocks = [b for b in blocks if b.rank != worst]
        while blocks[-1].kind in ("heading", "page_break"):  # a figures section left empty goes whole
            blocks.pop()
        data, pages = _render(blocks)
    atomic_write_bytes(path, data)
    return pages
