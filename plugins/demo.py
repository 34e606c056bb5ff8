"""``liteda demo`` (``make demo``): the whole pipeline in miniature on the embedded default, offline.

Source-only, adaptation, teacher -> student distillation, compression, ONNX / INT8 export and the benchmark of
every artifact, then the report — through :mod:`liteda.grid`, the code behind ``make all-tasks``, on the
embedded Digits task (:mod:`liteda.digits`: scikit-learn's digits as the labeled source, a coloured,
textured version of other digits as the unlabeled target). No download, no ``../shared``.

The settings were chosen without target labels: DANN a priori (Digits -> coloured digits is the shift of the
DANN paper), its gentler start (trade-off 0.3, gradient reversal ramped over 300 steps) because the default one
collapsed on some seeds by source-validation accuracy and the label-free IM score, the learning rate by
source-validation accuracy, the online teacher by the IM score. ``benchmarks/demo_seeds.py`` runs the demo for
three seeds and commits the table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from .utils import OneLineParser, fail

# One place for the demo's recipe: the grid's flags (liteda grid -h), at a size that runs in minutes on 2 cores.
DEMO_GRID = {
    "--epochs": "30",
    "--methods": ["dann"],
    "--method-args": "--trade-off 0.3 --grl-max-iters 300",
    "--teacher": "mobilenet_v3_small",  # the adapted student's own architecture teaches a fresh student
    "--teacher-method": "dann",
    "--recipes": ["1mb"],
    "--train-args": "--scratch --resize-size 36 --crop-size 32 --scale 0.6 1.0 --no-hflip --no-prelogits "
                    "--bottleneck-dim 128 --lr 0.01",
    "--kd-args": "",
    "--compress-args": "--latency-runs 20",
    "--bench-args": "--runtime torch ort --iters 50 --warmup 5",
    "--threads": "1",  # per stage: same seed, same numbers, whatever -j
}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="liteda demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/digits", help="where the embedded dataset is generated")
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default=None, help="report folder (default <runs>/Digits/report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--jobs", type=int, default=2, help="stages at a time (one thread each)")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE",
                   help="override one of the demo's grid flags, e.g. --set epochs=2 (tests run it at a tiny size)")
    return p


def grid_argv(a: argparse.Namespace, out: Path) -> list[str]:
    settings = dict(DEMO_GRID)
    for item in a.set:
        flag, sep, value = item.partition("=")
        if not sep or f"--{flag}" not in settings:
            fail(f"--set '{item}': expected FLAG=VALUE with FLAG one of {', '.join(k[2:] for k in settings)}")
        settings[f"--{flag}"] = value.split() if isinstance(settings[f"--{flag}"], list) else value
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
    if (out / "resources.md").is_file():  # the report printed the three-way (headline) table above
        print("\n" + (out / "resources.md").read_text())
    print(f"[demo] pipeline done in {seconds:.0f} s; report: {out / 'report.html'} (and report.md)")
