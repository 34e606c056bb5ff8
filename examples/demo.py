"""`make demo`: the pipeline on the embedded default (scikit-learn digits -> MNIST-M-style target), offline.

Runs source-only, adaptation methods and the oracle on Digits S->M through the same runner as every other
script, then prints the tllib-style table. A scratch MobileNetV3-Small at 32 px keeps it to minutes on 2 cores.
Hyper-parameters were chosen on source-test accuracy only (PROTOCOL.md: never on target labels).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from liteda.runner import main as run
from liteda.tables import accuracy_grid, collect_runs, table_rows, to_markdown
from liteda.utils import atomic_write_text, machine_label, run_cli

# (name in the table, method, regime)
ROWS = [("source_only", "source_only", "source_only"), ("dann", "dann", "adapt"), ("oracle", "source_only", "oracle")]


def demo(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default="data/digits")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=[r[0] for r in ROWS])
    a = p.parse_args(argv)
    common = [a.root, "-d", "Digits", "-s", "S", "-t", "M", "--scratch", "--resize-size", "36", "--crop-size",
              "32", "--epochs", str(a.epochs), "--lr", str(a.lr), "--seed", str(a.seed), "--runs-root",
              a.runs_root, "--no-prelogits", "--bottleneck-dim", "128",
              "--scale", "0.6", "1.0", "--no-hflip", "--resume", "--no-progress"]
    t0 = time.time()
    for name, method, regime in ROWS:
        if name not in a.methods:
            continue
        run_dir = Path(a.runs_root) / "Digits" / "S2M" / name / f"seed{a.seed}"
        if (run_dir / "results.json").is_file():
            print(f"[demo] {name}: finished earlier, reusing {run_dir}")
            continue
        print(f"[demo] {name} ({regime}) ... {time.time() - t0:.0f}s elapsed", flush=True)
        run(method, regime, common)
    runs = [r for r in collect_runs(a.runs_root, "Digits") if r["seed"] == a.seed and r["epochs"] == a.epochs]
    header, body = table_rows(accuracy_grid(runs, rows=[n for n, _, _ in ROWS if n in a.methods]))
    md = (f"Digits S→M (embedded default), target-test accuracy (%), held-out protocol, scratch MobileNetV3-Small "
          f"32 px, {a.epochs} epochs, seed {a.seed}. Machine: {machine_label()}.\n\n" + to_markdown(header, body))
    atomic_write_text(Path(a.runs_root) / "Digits" / "demo_results.md", md)
    print("\n" + md + f"\n[demo] done in {time.time() - t0:.0f}s; table: {Path(a.runs_root) / 'Digits' / 'demo_results.md'}")


if __name__ == "__main__":
    sys.exit(run_cli(demo))
