"""The written report (``report.pdf``) as a list of blocks: problem and setup, methods, the three-way table,
compression and acceleration with the Pareto plot, what helped and what did not, limitations, and the figure
grids. Built from the same records, tables and figures as ``report.md``; ``pdf.py`` lays the blocks out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .collect import STUDENT_ARCH, Collected
from .findings import dataset_name, limitations, methods_lines, setup_lines, what_helped_lines
from .plots import Figure

Table = tuple[list[str], list[list[str]]]

PROBLEM = ("A classifier trained on labeled images of one domain (the source) loses accuracy on another domain (the "
           "target) where only unlabeled images are at hand. LiteDA adapts a small student network to the target "
           "without reading a target label, distils a larger adapted teacher into it, compresses it and deploys it "
           "as a file, and measures every step against the same network trained on the source alone "
           "(source-only, the lower reference) and trained with target labels (the oracle, the upper reference).")

# Figures the written report shows, (kind, part) most important first: when the report runs past its page limit
# the last ones are left out (report.html shows every figure). Curves: the distilled student's only.
FIGURE_ORDER = (("confusion", ""), ("tsne", "deployed"), ("a_distance", ""), ("tsne", "distilled"),
                ("tsne", "source_only"), ("tsne", "teacher"), ("tsne", "oracle"), ("curves", "distilled"))


@dataclass
class Block:
    kind: str                       # title, heading, text, bullets, table, figure, page_break
    text: str = ""                  # title, heading or paragraph text; a table's or figure's caption
    items: Sequence[str] = ()       # bullets
    table: Optional[Table] = None
    path: Optional[Path] = None     # figure
    rank: int = 0                   # figures: the higher, the sooner it is left out to fit the page limit


def _plain(text: str) -> str:
    """Markdown's inline code marks are not PDF text."""
    return text.replace("`", "")


def _figure_rank(f: Figure, distilled: Optional[str]) -> Optional[int]:
    """The figure's place in ``FIGURE_ORDER`` (None: not in the written report)."""
    part = "distilled" if f.kind == "curves" and f.part == distilled else f.part
    return FIGURE_ORDER.index((f.kind, part)) if (f.kind, part) in FIGURE_ORDER else None


def written_report(c: Collected, headline: Table, metrics: Table, artifacts: Table, compression: Table,
                   figures: Sequence[Figure], notes: Sequence[str]) -> list[Block]:
    """The blocks of ``report.pdf`` from the collected records, the report's tables and its figures; ``notes``:
    what could not be drawn (listed under the limitations)."""
    distilled = next((k for k in c.order if any(r["method"] == k and r.get("group") == "distill" for r in c.runs)),
                     None)
    blocks = [
        Block("title", f"LiteDA report: {dataset_name(c)}, adapting, distilling and compressing {STUDENT_ARCH}"),
        Block("text", f"Built by liteda report from the stage records under {c.base.as_posix()} "
                      f"({len(c.stages)} stages); every number is read from those records."),
        Block("heading", "1. Problem and setup"),
        Block("text", PROBLEM),
        Block("bullets", items=[_plain(s) for s in setup_lines(c)]),
        Block("heading", "2. Methods"),
        Block("bullets", items=[_plain(s) for s in methods_lines(c)]),
        Block("heading", "3. Source-only, adapted and distilled, oracle"),
        Block("table", "Target-test accuracy (%) per task and averaged over tasks, mean ± std over seeds; size of "
                       "the model file (the deployed file for deployed rows) and its batch-1 p50 latency.",
              table=headline),
    ]
    if metrics[1]:
        blocks.append(Block("table", "Target-test metrics averaged over tasks, mean ± std over seeds: accuracy, "
                                     "cross-entropy loss, macro precision, recall and F1, NMI, Rand index and "
                                     "adjusted Rand index of predicted vs true classes.", table=metrics))
    blocks.append(Block("heading", "4. Compression and acceleration"))
    if compression[1]:
        blocks.append(Block("table", "Each compressed model: its steps, the accuracy of the student it started from "
                                     "and its own, parameters and file size (means over tasks and seeds).",
                            table=compression))
    if artifacts[1]:
        blocks.append(Block("table", "Every benchmarked artifact: file size, the accuracy of that file run by its "
                                     "runtime, batch-1 p50 latency, batch-32 throughput (means over tasks and "
                                     "seeds).", table=artifacts))
    pareto = next((f for f in figures if f.kind == "pareto"), None)
    if pareto is not None:
        blocks.append(Block("figure", pareto.caption, path=pareto.path))
    if not (compression[1] or artifacts[1] or pareto):
        blocks.append(Block("text", "No compress or bench stage in the records."))
    blocks += [Block("heading", "5. What helped and what did not"),
               Block("bullets", items=[_plain(s) for s in what_helped_lines(c)]),
               Block("heading", "6. Limitations"),
               Block("bullets", items=[_plain(s) for s in limitations(c, notes)] or ["None recorded."])]
    shown = sorted(((r, f) for f in figures if f.kind != "pareto"
                    for r in [_figure_rank(f, distilled)] if r is not None), key=lambda rf: rf[0])
    if shown:
        blocks += [Block("page_break"), Block("heading", "7. Figures")]
        blocks += [Block("figure", f.caption, path=f.path, rank=1 + r) for r, f in shown]
    return blocks
