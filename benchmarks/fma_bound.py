"""How close each deployed artifact's batch-32 and batch-1 speed comes to this CPU's FP32 FMA bound -> <OUT>.{md,csv,json}:

    python benchmarks/fma_bound.py --summary STUDY/speedup_1thread.json --out STUDY/fma_bound_1thread

The bound is measured, not taken from a datasheet: the best FP32 matrix-multiply rate PyTorch's BLAS reaches on
this machine at the summary's thread count (``--gemm`` square matrices, best of ``--reps``). Each artifact's
achieved rate is its bench bs32 throughput times the float model's MACs at its input size (counted on the run's
model with ``FlopCounterMode``), so an INT8 file is credited with the same MACs as its float model: above 100 %
means the INT8 dot-product units (VNNI) did more multiply-adds per cycle than FP32 FMA can.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from liteda.classifier import load_classifier
from liteda.metrics import count_flops
from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, read_json, run_cli, write_json


def gemm_peak_gmacs(n: int, threads: int, reps: int) -> float:
    """Best FP32 multiply-adds per second (10^9) of an n x n x n matrix multiply at ``threads`` intra-op threads."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):  # warm the BLAS and the caches
            a @ b
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(prev)
    return n ** 3 / best / 1e9


def float_macs(baseline_path: str, px: int, cache: dict) -> Optional[int]:
    """MACs of the float model behind a latency run (its model.pt) at ``px`` input pixels."""
    key = (baseline_path, px)
    if key not in cache:
        p = Path(baseline_path)
        if not p.is_file():
            cache[key] = None
        else:
            model, _ = load_classifier(p)
            cache[key] = int(count_flops(model.eval(), px)["macs"])
    return cache[key]


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", required=True, help="speedup_summary.py JSON (its records carry bs32 throughput)")
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    p.add_argument("--gemm", type=int, default=2048, help="matrix size of the peak measurement")
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args(argv)
    if not Path(a.summary).is_file():
        fail(f"--summary: '{a.summary}' does not exist")
    doc = read_json(Path(a.summary))
    recs = doc.get("records") or fail(f"--summary: '{a.summary}' has no records (not a speedup_summary.py JSON)")
    threads = sorted({r.get("bench_threads") or r["threads"] for r in recs})
    if len(threads) != 1:
        fail(f"--summary: '{a.summary}' mixes bench thread counts {threads}")
    peak = gemm_peak_gmacs(a.gemm, threads[0], a.reps)
    cache: dict = {}
    per_art: dict[str, list[dict]] = {}
    for r in recs:
        if not r.get("bs32_img_s"):
            continue
        base = read_json(Path(r["source"]))["rows"][0]["path"]
        macs = float_macs(base, int(r["input_px"]), cache)
        if macs is None:
            continue
        per_art.setdefault(r["artifact"], []).append({
            **r, "macs": macs, "gmacs": r["bs32_img_s"] * macs / 1e9, "gmacs_bs1": macs / r["median_ms"] / 1e6,
            # the rate a 10x speed-up over eager would need, at this file's MACs
            "gmacs_for_10x": macs / (r["baseline_ms"] / 10) / 1e6})
    header = ["artifact", "precision", "px", "M MACs", "bs32 img/s", "bs32 G MAC/s", "bs32 % of peak",
              "bs1 G MAC/s", "bs1 % of peak", "10× eager needs G MAC/s", "tasks"]
    body, summary = [], []
    for art, rows in per_art.items():
        mean = lambda k: sum(x[k] for x in rows) / len(rows)  # noqa: E731
        g, g1 = mean("gmacs"), mean("gmacs_bs1")
        s = {"artifact": art, "precision": rows[0]["precision"], "input_px": rows[0]["input_px"],
             "macs": rows[0]["macs"], "bs32_img_s": mean("bs32_img_s"), "gmacs": g, "pct_of_peak": 100 * g / peak,
             "gmacs_bs1": g1, "pct_of_peak_bs1": 100 * g1 / peak, "gmacs_for_10x": mean("gmacs_for_10x"),
             "tasks": [x["task"] for x in rows]}
        summary.append(s)
        body.append([art, s["precision"], str(s["input_px"]), f"{s['macs'] / 1e6:.1f}", f"{s['bs32_img_s']:.0f}",
                     f"{g:.1f}", f"{s['pct_of_peak']:.0f}", f"{g1:.1f}", f"{s['pct_of_peak_bs1']:.0f}",
                     f"{s['gmacs_for_10x']:.0f}", str(len(rows))])
    if not body:
        fail(f"--summary: no record of '{a.summary}' has a bs32 throughput and a readable float model")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = write_table(out, header, body)
    cmd = f"python benchmarks/fma_bound.py --summary {a.summary} --out {a.out}"
    machine = {"cpu": "; ".join(sorted({str(r.get("machine")) for r in recs})), "torch": torch.__version__,
               "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": threads[0]}
    write_json(out.with_suffix(".json"), {"command": cmd, "machine": machine, "gemm_n": a.gemm,
                                          "peak_gmacs": peak, "summary": summary})
    atomic_write_text(out.with_suffix(".md"),
        f"# Throughput against the FP32 FMA bound ({threads[0]} thread{'s' if threads[0] > 1 else ''})\n\n"
        f"Regenerate: `{cmd}`\n\n"
        f"Bound: {peak:.1f} G MAC/s, the best FP32 {a.gemm}x{a.gemm} matrix multiply of PyTorch {torch.__version__} "
        f"({machine['torch_cpu_capability']}) on {machine['cpu']} at {threads[0]} thread(s). Throughput: the bench's bs32 "
        "images/s and bs1 median latency (interleaved run; means over tasks) with the float model's MACs at the "
        "artifact's input size. INT8 rows count the same MACs; they can pass 100 % because VNNI does more 8-bit "
        "multiply-adds per cycle than FP32 FMA. The last column is the rate a file with these MACs would need to run "
        "10x faster than the float model in PyTorch eager at bs1.\n\n"
        + md + "\n")
    print(md)
    return {"peak_gmacs": peak, "summary": summary}


if __name__ == "__main__":
    sys.exit(run_cli(main))
