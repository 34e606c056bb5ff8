"""Fault injection: the grid on the embedded default, killed (SIGKILL, the whole process group) at random points
N times and rerun until it finishes; its tables must equal an uninterrupted run's, with no temporary file left.

    python benchmarks/fault_injection.py --kills 20 --seed 0 --max-delay 30 --out benchmarks/results/fault_injection

Writes ``<out>.json`` and ``<out>.md``: the kills (when, which stage was running), whether every accuracy table
is identical to the uninterrupted run's, and the stray temporaries found. Timing columns differ by nature and
are not compared (``accuracy*.csv`` and ``compression_*.csv`` are).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from liteda.utils import atomic_write_text, machine_info, machine_label, write_json

TINY = "--scratch -i 2 -b 8 --resize-size 36 --crop-size 32 --scale 0.6 1.0 --no-progress"


def grid_cmd(runs: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "liteda", "grid", str(data), "-d", "Digits", "--tasks", "S2M", "--seeds", "0",
            "--epochs", "3", "--methods", "dann", "--teacher", "mobilenet_v3_small", "--teacher-method", "dann",
            "--recipes", "1mb", "--runs", str(runs), "--results", str(runs / "results"), "--train-args", TINY,
            "--compress-args", "--ft-epochs 1 --ft-iters 2 -b 8 --latency-runs 2 --calib-batches 1",
            "--bench-args", "--runtime torch ort --iters 3 --warmup 1 --calib-size 8", "--no-analysis"]


def compared_tables(results: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(results.glob("*.csv"))
            if p.name.startswith(("accuracy", "compression_"))}


def running_stage(runs: Path) -> str:
    """The stage whose log changed last: what the kill interrupted."""
    logs = sorted((runs / "Digits" / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].stem.replace("_", " ") if logs else "(start-up)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-delay", type=float, default=40.0, help="a kill lands uniformly in [1, this] s after a start")
    p.add_argument("--work", default="runs_fault_injection", help="scratch folder (two runs trees)")
    p.add_argument("--out", default="benchmarks/results/fault_injection")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    work = Path(a.work)
    data = work / "digits"
    env = {**os.environ, "LITEDA_THREADS": "1"}

    t0 = time.time()
    subprocess.run(grid_cmd(work / "clean", data), check=True, env=env, stdout=subprocess.DEVNULL)
    clean_seconds = time.time() - t0
    reference = compared_tables(work / "clean" / "results")

    kills, faulty, completions = [], work / "faulty", []

    def check(tree: Path) -> dict:
        """A finished faulty tree against the uninterrupted one: equal tables, no temporaries left."""
        tables = compared_tables(tree / "results")
        return {"tables_equal": {name: tables.get(name) == text for name, text in reference.items()},
                "stray_temporaries": sorted(str(q) for q in tree.rglob("*.tmp")), "after_kills": len(kills)}

    while len(kills) < a.kills:
        delay = rng.uniform(1.0, a.max_delay)
        proc = subprocess.Popen(grid_cmd(faulty, data), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=delay)
            if proc.returncode == 0:  # finished before the next kill: check it, then start over
                completions.append(check(faulty))
                print(f"[fault] the grid finished before kill {len(kills) + 1} (tables equal: "
                      f"{all(completions[-1]['tables_equal'].values())}); starting over from a fresh tree")
                subprocess.run(["rm", "-rf", str(faulty)], check=True)
                continue
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append({"after_s": round(delay, 1), "stage": running_stage(faulty)})
            print(f"[fault] kill {len(kills)}/{a.kills} after {delay:.1f} s during {kills[-1]['stage']}", flush=True)
    final = subprocess.run(grid_cmd(faulty, data), env=env, stdout=subprocess.DEVNULL)
    completions.append(check(faulty))
    equal = {name: all(c["tables_equal"].get(name) for c in completions) for name in reference}
    stray = sorted({q for c in completions for q in c["stray_temporaries"]})
    doc = {"schema": "liteda.fault_injection/1", "kills": kills, "final_exit_code": final.returncode,
           "completions": completions, "tables_equal": equal,
           "all_equal": all(equal.values()) and bool(equal), "stray_temporaries": stray,
           "uninterrupted_seconds": clean_seconds, "command": " ".join(grid_cmd(Path("RUNS"), Path("DATA"))),
           "machine": machine_info()}
    out = Path(a.out)
    write_json(out.with_suffix(".json"), doc)
    lines = [f"# Fault injection: {len(kills)} kills of `liteda grid` on the embedded default",
             "", f"Machine: {machine_label()}. Regenerate: `python benchmarks/fault_injection.py --kills {a.kills} "
             f"--seed {a.seed} --max-delay {a.max_delay:g}`.", "",
             f"- Final run exit code: {final.returncode}; uninterrupted run: {clean_seconds:.0f} s.",
             f"- Interrupted grids brought to completion and compared: {len(completions)} (the grid sometimes "
             f"finished before the next kill: it was compared, then started again from an empty tree).",
             f"- Tables identical to the uninterrupted run in every completion: "
             f"**{'yes' if doc['all_equal'] else 'no'}** ({', '.join(f'{k}: {v}' for k, v in equal.items())}).",
             f"- Stray temporary files: {len(stray)}.", "", "| kill | after (s) | stage running |", "|---|---|---|"]
    lines += [f"| {i + 1} | {k['after_s']} | {k['stage']} |" for i, k in enumerate(kills)]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(json.dumps({k: doc[k] for k in ("all_equal", "final_exit_code", "stray_temporaries")}))


if __name__ == "__main__":
    main()
