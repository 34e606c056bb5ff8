"""Run a (task x method x seed) grid on Office-Caltech-10 with the stand-in weights and write the table.

    python benchmarks/office_caltech.py --tasks A2W W2A --methods source_only oracle --epochs 30 \
        --out benchmarks/results/baselines

Each run goes through the users' example script (``--resume``: an interrupted grid continues; a finished run,
one with results.json, is skipped). Results: <out>.md / .csv / .json with per-epoch seconds and the machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from liteda.tables import accuracy_grid, collect_runs, table_rows, to_csv, to_markdown
from liteda.utils import atomic_write_text, machine_info, machine_label, write_json

SHARED = Path(os.environ.get("LITEDA_SHARED", ROOT.parent / "shared"))
STANDIN = SHARED / "weights" / "mobilenet_v3_small-imagenet-standin.pth"


def run_dir(runs_root: Path, task: str, method: str, seed: int) -> Path:
    return runs_root / "OfficeCaltech" / task / method / f"seed{seed}"


def launch(task: str, method: str, seed: int, a) -> None:
    script = ROOT / "examples" / f"{method}.py"
    s, t = task.split("2")
    cmd = [sys.executable, str(script), str(a.root), "-d", "OfficeCaltech", "-s", s, "-t", t, "--epochs", str(a.epochs),
           "--seed", str(seed), "--pretrained", str(a.pretrained), "--runs-root", str(a.runs_root), "--resume",
           "--no-progress", *a.extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(SHARED / "datasets" / "office_caltech_10"))
    p.add_argument("--pretrained", default=str(STANDIN))
    p.add_argument("--tasks", nargs="+", default=["A2W", "D2W", "W2D", "A2D", "D2A", "W2A"])
    p.add_argument("--methods", nargs="+", default=["source_only", "oracle"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--out", default="benchmarks/results/baselines")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from existing runs")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to every run")
    a = p.parse_args()
    a.extra = [x for x in a.extra if x != "--"]
    a.runs_root = Path(a.runs_root)
    if not a.table_only:
        if not Path(a.root).is_dir():
            sys.exit(f"error: dataset root '{a.root}' does not exist (set --root or LITEDA_SHARED)")
        t0 = time.time()
        for seed in a.seeds:
            for task in a.tasks:
                for method in a.methods:
                    if not (run_dir(a.runs_root, task, method, seed) / "results.json").is_file():
                        launch(task, method, seed, a)
                    print(f"[grid] {task} {method} seed {seed} done, {time.time() - t0:.0f}s elapsed", flush=True)
    write_table(a)


def write_table(a) -> None:
    runs = [r for r in collect_runs(a.runs_root, "OfficeCaltech")
            if r["task"] in a.tasks and r["method"] in a.methods and r["seed"] in a.seeds and r["epochs"] == a.epochs]
    if not runs:
        sys.exit("error: no finished runs match")
    g = accuracy_grid(runs, rows=a.methods, tasks=a.tasks)
    header, body = table_rows(g)
    sec = accuracy_grid(runs, metric=lambda r: r["timing"]["seconds_per_epoch"], rows=a.methods, tasks=a.tasks)
    sh, sb = table_rows(sec)
    info = machine_info()
    weights = sorted({r["weights"] for r in runs})
    md = (f"# Office-Caltech-10, target-test accuracy (%), held-out protocol\n\n"
          f"{a.epochs} epochs, seeds {','.join(map(str, a.seeds))}, MobileNetV3-Small, weights: "
          f"{', '.join(weights)} (stand-in ImageNet weights, not torchvision's). Machine: {machine_label(info)}.\n"
          f"Regenerate: `python benchmarks/office_caltech.py --tasks {' '.join(a.tasks)} --methods "
          f"{' '.join(a.methods)} --seeds {' '.join(map(str, a.seeds))} --epochs {a.epochs} --out {a.out}`\n\n"
          + to_markdown(header, body) + "\n## Training seconds per epoch\n\n" + to_markdown(sh, sb))
    out = Path(a.out)
    atomic_write_text(out.with_suffix(".md"), md)
    atomic_write_text(out.with_suffix(".csv"), to_csv(header, body))
    write_json(out.with_suffix(".json"), {
        "machine": info, "epochs": a.epochs, "weights": weights, "protocol": "heldout",
        "runs": [{k: r[k] for k in ("task", "method", "seed", "epochs", "weights")} |
                 {"target_test_acc": r["target_test"]["acc"], "target_all_acc": r["target_all"]["acc"],
                  "seconds_per_epoch": r["timing"]["seconds_per_epoch"], "images_per_s": r["timing"]["images_per_s"]}
                 for r in runs]})
    print(md)


if __name__ == "__main__":
    main()
