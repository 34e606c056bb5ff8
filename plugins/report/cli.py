"""``liteda report``: tables, figures and the written report of one dataset's finished runs.

    liteda report --runs runs --dataset OfficeCaltech --out results
"""
from __future__ import annotations

import argparse
from typing import Optional

from ..utils import OneLineParser


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="liteda report", description="Tables (Markdown + CSV), figures, report.md and a "
                      "self-contained report.html from the stage records of one dataset's runs tree.")
    p.add_argument("--runs", default="runs", help="the runs tree (holds <dataset>/<task>/<run>/seed<k>/)")
    p.add_argument("--dataset", default="OfficeCaltech", help="which dataset's runs to report")
    p.add_argument("--out", default="results", help="the results folder to write")
    return p


def main(argv: Optional[list[str]] = None) -> dict:
    from .build import build

    a = build_parser().parse_args(argv)
    return build(a.runs, a.dataset, a.out)
