"""``liteda demo`` (``make demo``): the whole pipeline in miniature on the embedded default, offline.

Source-only, adaptation, teacher -> student distillation, compression, ONNX / INT8 export and the benchmark of
every artifact, then the report — through :mod:`liteda.grid`, the code behind ``make all-tasks``, on the
embedded Digits task (:mod:`liteda.digits`: scikit-learn's digits as the labeled source, a coloured,
textured version of other digits as the unlabeled target). No download, no ``../shared``.

The settings below were chosen without target labels: the method and its knobs a priori (MCC is the default
teacher method of the real recipe) and the budget by source-test accuracy and wall-clock time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from .utils import OneLineParser

# One place for the demo's recipe: the grid's flags (liteda grid -h), at a size that runs in minutes on 2 cores.
DEMO_TRAIN_ARGS = ("--scratch --resize-size 36 --crop-size 32 --scale 0.6 1.0 --no-hflip --no-prelogits "
                   "--bottleneck-dim 128 --lr 0.05 -b 32")
DEMO_GRID = {
    "--epochs": "15",
    "--methods": ["mcc"],
    "--teacher": "mobilenet_v3_small",
    "--teacher-method": "mcc",
    "--recipes": ["1mb"],
    "--train-args": DEMO_TRAIN_ARGS,
    "--kd-args": "--teacher-cache",
    "--compress-args": "--ft-epochs 2 --latency-runs 20",
    "--bench-args": "--iters 50 --warmup 5",
}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="liteda demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/digits", help="where the embedded dataset is generated")
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default=None, help="report folder (default <runs>/Digits/report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--jobs", type=int, default=1)
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("FLAG", "VALUE"),
                   help="override one grid flag, e.g. --set --epochs 2 (tests run the demo at a tiny size)")
    return p


def grid_argv(a: argparse.Namespace, out: Path) -> list[str]:
    settings = dict(DEMO_GRID)
    for flag, value in a.set:
        settings[flag] = value.split() if isinstance(settings.get(flag), list) else value
    argv = [a.root, "-d", "Digits", "--tasks", "S2M", "--seeds", str(a.seed), "--runs", a.runs,
            "--results", str(out), "-j", str(a.jobs)]
    for flag, value in settings.items():
        argv += [flag, *value] if isinstance(value, list) else [flag, value]
    return argv


def main(argv: Optional[list[str]] = None) -> None:
    from .grid import main as grid_main

    a = build_parser().parse_args(argv)
    out = Path(a.out) if a.out else Path(a.runs) / "Digits" / "report"
    t0 = time.time()
    grid_main(grid_argv(a, out))
    seconds = time.time() - t0
    for name in ("headline.md", "resources.md"):
        if (out / name).is_file():
            print("\n" + (out / name).read_text())
    print(f"[demo] pipeline done in {seconds:.0f} s; report: {out / 'report.html'} (and report.md, report.pdf)")
