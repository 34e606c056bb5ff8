"""The report: every stage record under ``<runs>/<dataset>`` -> tables, figures, ``report.md``/``report.html``.

collect (records -> rows) -> tables / plots -> html; ``build`` writes the results folder, ``cli`` parses flags.
"""
from .build import build

__all__ = ["build"]
