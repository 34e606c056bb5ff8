"""The demo for several seeds: is adaptation's margin over source-only robust, and how long does the demo take?

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out benchmarks/results/demo --runs runs_demo_seeds

Runs ``liteda demo --seed s`` for each seed into one runs tree (each seed timed), then the report over all seeds
(mean ± std) into ``--out``, and ``<out>/demo_seeds.{json,md}``: per seed, target-test accuracy of every
headline row and the margin of the adapted, distilled and deployed rows over source-only, with the seconds each
demo took and the machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from liteda.report.collect import collect
from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, machine_info, machine_label, run_cli, write_json


def per_seed_rows(runs: Path) -> tuple[dict[int, dict[str, float]], dict[str, str], list[str]]:
    """{seed: {row key: target-test acc}}, the row labels and their order, read from the stage records."""
    c = collect(runs, "Digits")
    acc: dict[int, dict[str, float]] = {}
    for r in c.rows:
        value = (r.get("target_test") or {}).get("acc")
        if value is not None:
            acc.setdefault(r["seed"], {})[r["method"]] = float(value)
    return acc, c.labels, c.order


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", default="runs_demo_seeds", help="runs tree (not committed)")
    p.add_argument("--out", default="benchmarks/results/demo")
    a = p.parse_args(argv)
    runs, out = Path(a.runs), Path(a.out)
    if runs.exists() and any(runs.iterdir()):  # finished stages would be skipped: the timings would be of nothing
        fail(f"--runs '{runs}' is not empty: give a new folder or delete it, so that every demo runs in full")
    seconds, load = {}, {}
    for seed in a.seeds:
        load[seed] = [os.getloadavg()[0]]
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "liteda", "demo", "--seed", str(seed), "--runs", str(runs),
                        "--out", str(runs / "Digits" / f"report_seed{seed}")], check=True)
        seconds[seed] = time.time() - t0
        load[seed].append(os.getloadavg()[0])
    subprocess.run([sys.executable, "-m", "liteda", "report", "--runs", str(runs), "--dataset", "Digits",
                    "--out", str(out)], check=True)
    acc, labels, order = per_seed_rows(runs)
    base = "source_only"
    keys = [k for k in order if any(k in acc[s] for s in a.seeds)]
    header = ["row", *[f"seed {s}" for s in a.seeds], *[f"margin s{s}" for s in a.seeds]]
    body = [[labels.get(k, k), *[f"{acc[s][k]:.1f}" if k in acc[s] else "–" for s in a.seeds],
             *[f"{acc[s][k] - acc[s][base]:+.1f}" if k in acc[s] and base in acc[s] else "–" for s in a.seeds]]
            for k in keys]
    table = write_table(out / "demo_seeds", header, body)
    doc = {"schema": "liteda.demo_seeds/1", "seeds": a.seeds, "seconds_per_demo": seconds,
           "load_average_before_after": load, "accuracy": acc,
           "labels": labels, "machine": machine_info(),
           "command": "python benchmarks/demo_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_json(out / "demo_seeds.json", doc)
    times = ", ".join(f"seed {s}: {seconds[s]:.0f} s (1-min load {load[s][0]:.1f} → {load[s][1]:.1f})"
                      for s in a.seeds)
    atomic_write_text(out / "demo_seeds.md", "\n".join([
        "# `make demo` for several seeds", "",
        f"Target-test accuracy (%) of each row of the demo per seed, and its margin over source-only (points). "
        f"Machine: {machine_label()}. Each demo's wall time (set-up excluded; stages one thread each, two at a "
        f"time): {times}. Regenerate: `python benchmarks/demo_seeds.py --seeds {' '.join(map(str, a.seeds))}`.",
        "", table]))
    print(table)


if __name__ == "__main__":
    sys.exit(run_cli(main))
