"""tllib-style results tables: rows = methods, columns = tasks + Avg, mean ± std over seeds; one writer for the
Markdown + CSV pair every table is saved as.

A row is a dict with ``method`` (the row key), ``task``, ``seed`` and the metrics; :func:`accuracy_grid` groups
rows by key and task, :func:`table_rows` formats the grid, :func:`write_table` saves ``<stem>.md``/``<stem>.csv``.
"""
from __future__ import annotations

import csv
import io
import os
import statistics
from typing import Callable, Iterable, Optional, Sequence

from .utils import atomic_write_text

TASK_ORDER = ["A2W", "D2W", "W2D", "A2D", "D2A", "W2A"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_ms(values: Sequence[float], digits: int = 1) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def order_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = set(tasks)
    return [t for t in TASK_ORDER if t in tasks] + sorted(tasks - set(TASK_ORDER))


def accuracy_grid(runs: Sequence[dict], metric: Callable[[dict], Optional[float]] = lambda r: r["target_test"]["acc"],
                  rows: Optional[Sequence[str]] = None, tasks: Optional[Sequence[str]] = None) -> dict:
    """{row: {task: [values over seeds]}}; the Avg column averages per seed over the tasks present."""
    grid: dict[str, dict[str, dict[int, float]]] = {}
    for r in runs:
        v = metric(r)
        if v is not None:
            grid.setdefault(r["method"], {}).setdefault(r["task"], {})[r["seed"]] = float(v)
    rows = [m for m in (rows or sorted(grid)) if m in grid]
    tasks = list(tasks or order_tasks({t for m in grid.values() for t in m}))
    return {"rows": rows, "tasks": tasks, "grid": grid}


def _complete_seeds(cells: dict[str, dict[int, float]], tasks: Sequence[str]) -> list[int]:
    """Seeds that have every task (the only ones an Avg can use)."""
    if not tasks or not all(t in cells for t in tasks):
        return []
    return sorted(set.intersection(*(set(cells[t]) for t in tasks)))


def average_over_tasks(g: dict, row: str) -> list[float]:
    """A grid row's per-seed averages over every task (only seeds that have every task)."""
    return list(average_by_seed(g, row).values())


def average_by_seed(g: dict, row: str) -> dict[int, float]:
    """{seed: a grid row's average over every task}, for the seeds that have every task."""
    cells = g["grid"].get(row, {})
    return {s: statistics.fmean(cells[t][s] for t in g["tasks"]) for s in _complete_seeds(cells, g["tasks"])}


def _avg_values(cells: dict[str, dict[int, float]], tasks: Sequence[str]) -> list[float]:
    """Per-seed average over tasks, only for seeds that have every task (else no Avg)."""
    return [statistics.fmean(cells[t][s] for t in tasks) for s in _complete_seeds(cells, tasks)]


def _seeds_label(cells: dict[str, dict[int, float]], tasks: Sequence[str]) -> str:
    """``0,1,2``; when some seeds lack a task, which seeds the Avg is over: ``0,1,2 (Avg: 0)``."""
    seeds = sorted({s for t in cells.values() for s in t})
    complete = _complete_seeds(cells, tasks)
    label = ",".join(map(str, seeds))
    return label if complete == seeds or not complete else f"{label} (Avg: {','.join(map(str, complete))})"


def table_rows(g: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Method"] + [t.replace("2", "→") for t in g["tasks"]] + ["Avg", "seeds"]
    body = []
    for m in g["rows"]:
        cells = g["grid"][m]
        body.append([m] + [fmt_ms(list(cells.get(t, {}).values())) for t in g["tasks"]]
                    + [fmt_ms(_avg_values(cells, g["tasks"])), _seeds_label(cells, g["tasks"])])
    return header, body


def to_markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(body)
    return buf.getvalue()


def write_table(stem: str | os.PathLike, header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """``<stem>.md`` and ``<stem>.csv`` (each written atomically); returns the Markdown for embedding."""
    md = to_markdown(header, body)
    atomic_write_text(f"{os.fspath(stem)}.md", md)
    atomic_write_text(f"{os.fspath(stem)}.csv", to_csv(header, body))
    return md
