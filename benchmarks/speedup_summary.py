"""Speed-up and accuracy of each deployed artifact over several tasks, from `latency_ratio.py` runs and the
`liteda bench` records of the same files -> <OUT>.{md,csv,json}:

    python benchmarks/speedup_summary.py --latency 'STUDY/latency_ratio_*_1thread.json' --out STUDY/speedup_1thread

Per artifact (the run it deploys, runtime and precision): its interleaved bs1 speed-up over PyTorch eager of the
float model on each task and their mean; its target-test accuracy (measured by running that file, from the
bench record beside it) against the float model's (the latency run's baseline); its bs32 throughput; and, for
INT8, the ratio to the FP32 file of the same run on the same runtime at bs1 (interleaved) and bs32 (bench).
A column is a task, or a task and seed where several seeds of one task were timed. ``--runs DIR`` reads the run
folders from DIR (a study's committed ``runs/``) instead of where they were timed: each file's
``<task>/<run>/seed<k>/...`` tail is looked up there.
"""
from __future__ import annotations

import argparse
import glob
import re
import statistics
import sys
from pathlib import Path
from typing import Optional

from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, read_json, run_cli, write_json


def run_tail(path: str) -> Optional[tuple[str, ...]]:
    """``(task, run, seed<k>, ...)``: the part of a file's path from its task folder on (None: not in a run tree)."""
    parts = Path(path).parts
    k = next((i for i in range(len(parts) - 1, 1, -1) if re.fullmatch(r"seed\d+", parts[i])), None)
    return parts[k - 2:] if k is not None else None


def relocate(path: str, runs: Optional[Path]) -> Path:
    """Where the file is read from: its own path, or its run-tree tail under ``runs``."""
    tail = run_tail(path) if runs is not None else None
    return runs.joinpath(*tail) if tail else Path(path)


def bench_row(path: str, runtime: str, runs: Optional[Path] = None) -> Optional[dict]:
    """The `liteda bench` row of this file on this runtime (bench.json of its deploy folder), if it was benched."""
    here = relocate(path, runs).resolve()
    bench = here.parent / "bench.json"
    if not bench.is_file():
        return None
    for row in read_json(bench).get("rows", []):
        if row.get("path") and relocate(row["path"], runs).resolve() == here and row.get("runtime") == runtime:
            return row
    return None


def float_acc(baseline_path: str, runs: Optional[Path] = None) -> Optional[float]:
    """Target-test accuracy of the latency run's baseline: the float model's run folder."""
    res = relocate(baseline_path, runs).parent / "results.json"
    return read_json(res).get("target_test", {}).get("acc") if res.is_file() else None


def run_label(row: dict) -> str:
    """The run a latency row's file deploys, as `latency_ratio.py` named it (``kd_strongaug``; with its runs tree
    when two trees hold a run of that name: ``runs_160/kd_strongaug``); its run folder's name for older rows."""
    name = row.get("name")
    if not name:
        return Path(row["path"]).parents[2].name
    return name.rpartition("openvino:")[2].rsplit("/", 1)[0]


def collect(files: list[str], runs: Optional[Path] = None) -> list[dict]:
    """One record per (task, seed, artifact) of every latency run."""
    out = []
    for f in files:
        doc = read_json(Path(f))
        base = doc["rows"][0]
        task, seed = Path(base["path"]).parents[2].name, Path(base["path"]).parents[0].name
        ref = float_acc(base["path"], runs)
        fp32_bs32 = {}
        rows = []
        for r in doc["rows"][1:]:
            run = run_label(r)
            b = bench_row(r["path"], r["runtime"], runs)
            name = b["name"] if b else f"{r['runtime']} {r['precision']} {Path(r['path']).name}"
            rec = {"task": task, "seed": seed, "artifact": f"{run} / {name}", "run": run,
                   "runtime": r["runtime"], "precision": r["precision"], "input_px": r["input_px"],
                   "speedup": r["speedup"]["speedup_median"], "median_ms": r["median_ms"],
                   "baseline_ms": base["median_ms"], "acc": b.get("acc") if b else None, "float_acc": ref,
                   "bs32_img_s": b.get("bs32_img_s") if b else None, "size_mb": b.get("size_mb") if b else None,
                   "vs_fp32_bs1": (r.get("vs_fp32_file") or {}).get("speedup_median"),
                   "threads": doc["threads"], "bench_threads": b.get("threads") if b else None,
                   "machine": doc.get("machine_label"), "source": f}
            if r["precision"] == "fp32":
                fp32_bs32[(run, r["runtime"])] = rec["bs32_img_s"]
            rows.append(rec)
        for rec in rows:
            fp = fp32_bs32.get((rec["run"], rec["runtime"]))
            rec["vs_fp32_bs32"] = (rec["bs32_img_s"] / fp if rec["precision"] != "fp32" and fp and rec["bs32_img_s"]
                                   else None)
        out += rows
    return out


def summarise(recs: list[dict]) -> tuple[list[str], list[list[str]], list[dict]]:
    by_seed = len({(r["task"], r["seed"]) for r in recs}) > len({r["task"] for r in recs})
    for r in recs:  # several seeds of a task: a column each
        r["column"] = f"{r['task']} s{r['seed'].removeprefix('seed')}" if by_seed else r["task"]
    columns = list(dict.fromkeys(r["column"] for r in recs))
    arts = list(dict.fromkeys(r["artifact"] for r in recs))
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    header = ["artifact", "px", *[f"{c} ×" for c in columns], "mean ×", "acc %", "float acc %", "Δ pt",
              "bs32 img/s", "INT8 vs FP32 bs1", "INT8 vs FP32 bs32"]
    body, summary = [], []
    for a in arts:
        mine = {r["column"]: r for r in recs if r["artifact"] == a}
        both = [r for r in mine.values() if r["acc"] is not None and r["float_acc"] is not None]
        s = {"artifact": a, "tasks": sorted(mine), "speedup_mean": mean([r["speedup"] for r in mine.values()]),
             "acc_mean": mean([r["acc"] for r in both]), "float_acc_mean": mean([r["float_acc"] for r in both]),
             "bs32_img_s_mean": mean([r["bs32_img_s"] for r in mine.values() if r["bs32_img_s"]]),
             "vs_fp32_bs1_mean": mean([r["vs_fp32_bs1"] for r in mine.values() if r["vs_fp32_bs1"]]),
             "vs_fp32_bs32_mean": mean([r["vs_fp32_bs32"] for r in mine.values() if r["vs_fp32_bs32"]])}
        s["delta_pt"] = (s["acc_mean"] - s["float_acc_mean"]) if both else None
        summary.append(s)
        px = next(iter(mine.values()))["input_px"]
        body.append([a, str(px), *[fmt(mine[c]["speedup"], ".2f") if c in mine else "" for c in columns],
                     fmt(s["speedup_mean"], ".2f"), fmt(s["acc_mean"], ".1f"), fmt(s["float_acc_mean"], ".1f"),
                     fmt(s["delta_pt"], "+.1f"), fmt(s["bs32_img_s_mean"], ".0f"), fmt(s["vs_fp32_bs1_mean"], ".2f"),
                     fmt(s["vs_fp32_bs32_mean"], ".2f")])
    return header, body, summary


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", nargs="+", required=True, help="latency_ratio.py JSON files or globs")
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    p.add_argument("--runs", type=Path, help="read the run folders from here (<task>/<run>/seed<k>), not from where "
                                             "they were timed")
    a = p.parse_args(argv)
    files = sorted({f for g in a.latency for f in (glob.glob(g) or [g])})
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        fail(f"--latency: '{missing[0]}' does not exist")
    if a.runs is not None and not a.runs.is_dir():
        fail(f"--runs: '{a.runs}' is not a folder")
    recs = collect(files, a.runs)
    if len({r["threads"] for r in recs}) > 1 or len({(r["task"], r["seed"], r["artifact"]) for r in recs}) < len(recs):
        fail("--latency: give one latency run per task and seed, all at one thread count (a table per thread count)")
    header, body, summary = summarise(recs)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = write_table(out, header, body)
    cmd = (f"python benchmarks/speedup_summary.py --latency {' '.join(a.latency)} --out {a.out}"
           + (f" --runs {a.runs}" if a.runs is not None else ""))
    threads = sorted({r["threads"] for r in recs})
    n_tasks, n_columns = len({r["task"] for r in recs}), len({r["column"] for r in recs})
    scope = f"{n_tasks} tasks" if n_tasks == n_columns else f"{n_columns} task-seed runs over {n_tasks} task(s)"
    write_json(out.with_suffix(".json"), {"command": cmd, "summary": summary, "records": recs})
    atomic_write_text(out.with_suffix(".md"),
        f"# Speed-up over PyTorch eager and accuracy, per artifact ({scope})\n\n"
        f"Regenerate: `{cmd}`\n\n"
        f"Machine: {'; '.join(sorted({str(r['machine']) for r in recs}))}; threads: {threads}. "
        "Speed-up: median bs1 ratio to the float model in PyTorch eager (224 px), timed interleaved in one run per "
        "task. Accuracy: target-test top-1 of that file (its bench record), against the float model (Δ); bs32 from "
        f"the bench (back to back, not interleaved; bench threads: {sorted({r['bench_threads'] for r in recs}, key=str)}). "
        "INT8 vs FP32: the same run's FP32 file on the same runtime.\n\n"
        + md + "\n")
    print(md)
    return {"summary": summary}


if __name__ == "__main__":
    sys.exit(run_cli(main))
