"""Compression benchmark for one run: each technique alone + combined recipes, beside the uncompressed student
-> benchmarks/results/compress_<task>.{json,md,csv}.

Every row is one ``liteda compress`` run of the same parent (same images, same self-distillation budget), written
as a run folder of its own under ``--work`` (a runs tree of its own, ``<work>/<dataset>/<task>/<row>/seed<k>``,
so that the report of the main runs tree does not list the benchmark's rows); columns: target-test accuracy,
params, MACs, compressed.pt MB, INT8 ONNX MB, bs1 CPU latency (1 thread, p50). A last section measures the
engine's bf16 autocast switch on the recovery fine-tune (images/s, none vs bf16).

    python benchmarks/bench_compress.py --run runs/OfficeCaltech/A2W/kd/seed0 --ft-epochs 2
Tiny check: add ``--ft-iters 2 --latency-runs 5 --only prune-0.5 ptsq combined-eca-p0.35-qat``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from liteda.utils import atomic_write_text, machine_info, machine_label, read_json, run_cli, write_json

# row name -> ``liteda compress`` flags; results of these rows: benchmarks/studies/officecaltech_e30_lite0kd/
# compress_bench{,_se}/ (one task, every row) and benchmarks/studies/officecaltech_e30_lite0mcc/compress_bench/ (six)
ROWS: dict[str, list[str]] = {
    "prune-0.5": ["--prune", "0.5"],
    "prune-0.5-taylor-2steps": ["--prune", "0.5", "--prune-importance", "taylor", "--prune-steps", "2"],
    "prune-0.5-global": ["--prune", "0.5", "--prune-global"],
    "lowrank-0.9": ["--lowrank-energy", "0.9"],
    # Tucker-2 / CP where they apply: the dense kxk convs only (MobileNetV3-Small has one, the 3->16 stem;
    # benchmarks/lowrank_applicability.py lists them per architecture)
    "lowrank-kxk-tucker2": ["--lowrank-ratio", "0.5", "--lowrank-layers", "kxk", "--lowrank-kxk", "tucker2"],
    "lowrank-kxk-cp": ["--lowrank-ratio", "0.5", "--lowrank-layers", "kxk", "--lowrank-kxk", "cp"],
    "attention-eca": ["--attention", "eca"],
    "attention-cbam": ["--attention", "cbam"],
    "attention-ulsam": ["--attention", "ulsam"],
    "attention-lsas": ["--attention", "lsas"],
    "activation-relu": ["--activation", "relu"],
    "resolution-192": ["--resolution", "192"],
    "resolution-160": ["--resolution", "160"],
    "ptdq": ["--quantize", "ptdq"],
    "ptsq": ["--quantize", "ptsq"],
    "qat": ["--quantize", "qat", "--qat-lr", "0.0005"],
    # size-target rows (<= 1.0 MB): SE -> ECA removes the SE blocks' parameters; pruning or low-rank shrinks the
    # 576->1024->256 Linears; channels rounded to multiples of 8 suit the INT8 kernels
    "combined-eca-p0.35-ptsq": ["--attention", "eca", "--prune", "0.35", "--prune-round-to", "8", "--quantize", "ptsq"],
    "combined-eca-p0.35-qat": ["--attention", "eca", "--prune", "0.35", "--prune-round-to", "8", "--quantize", "qat",
                               "--qat-lr", "0.0005"],
    "combined-eca-lrlin0.25-qat": ["--attention", "eca", "--lowrank-ratio", "0.25", "--lowrank-layers", "linear",
                                   "--quantize", "qat", "--qat-lr", "0.0005"],
    # keeping SE: the SE blocks' 1x1 convs (many parameters, few MACs) and the Linear tail factorised at one ratio
    "combined-lrlinse0.25-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                 "--qat-lr", "0.0005"],
    "combined-lrlinse0.2-qat": ["--lowrank-ratio", "0.2", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                "--qat-lr", "0.0005"],
    "combined-lrlinse0.15-qat": ["--lowrank-ratio", "0.15", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                 "--qat-lr", "0.0005"],
    # the same size, data-aware: the SVD truncates W S (S: Cholesky factor of each layer's input second moment on
    # source and unlabeled target-train images), so the ranks drop what moves the outputs least on these inputs
    # (benchmarks/lowrank_alloc.py compares the plans before any fine-tune)
    "combined-lrlinse0.25-full-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--lowrank-whiten",
                                      "full", "--quantize", "qat", "--qat-lr", "0.0005"],
    # ... with its fine-tune kept only if it raises the label-free agreement
    "combined-lrlinse0.25-full-guard-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se",
                                            "--lowrank-whiten", "full", "--ft-guard", "--quantize", "qat",
                                            "--qat-lr", "0.0005"],
    # ... with static INT8 (calibration only) instead of QAT's fine-tune on the target-train images
    "combined-lrlinse0.25-full-guard-ptsq": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se",
                                             "--lowrank-whiten", "full", "--ft-guard", "--quantize", "ptsq"],
}
# the same <= 1 MB row with a 5-epoch fine-tune after each stage (a row's flags override the budget): how much of
# its loss is the fine-tune budget rather than the technique
ROWS["combined-eca-lrlin0.25-qat-ft5"] = ROWS["combined-eca-lrlin0.25-qat"] + ["--ft-epochs", "5", "--qat-epochs", "5"]
COLUMNS = ("technique", "target_test_acc", "delta_acc", "params", "macs", "file_mb", "onnx_int8_mb", "latency_ms_p50")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the run whose model every row compresses (a finished run folder)")
    p.add_argument("--only", nargs="*", default=None, help=f"subset of the rows: {' '.join(ROWS)}")
    p.add_argument("--ft-epochs", default="2", help="recovery fine-tune epochs of every row (QAT rows: its epochs too)")
    p.add_argument("--ft-iters", default=None)
    p.add_argument("--latency-runs", default="50")
    p.add_argument("--amp-iters", type=int, default=10, help="iterations for the bf16 speed check (0: skip)")
    p.add_argument("--work", default="runs_compress_bench", help="runs tree of the rows' compress runs")
    p.add_argument("--results", default="benchmarks/results")
    return p.parse_args(argv)


def row_of(name: str, res: dict, which: str = "after") -> dict:
    r = res[which]
    return {"technique": name, "target_test_acc": r["target_test"]["acc"],
            "delta_acc": r["target_test"]["acc"] - res["before"]["target_test"]["acc"], "params": r["params"],
            "macs": r.get("macs"), "file_mb": r.get("file_mb"), "latency_ms_p50": r.get("latency_ms_p50")}


def onnx_int8_mb(out: Path, res: dict) -> Optional[float]:
    """The deployable file of a PyTorch-quantized recipe (PTSQ/QAT): its INT8 QDQ ONNX, compacted as the deploy
    stage writes it. ``file_mb`` is PyTorch's pickle, which stores per-channel scales as float64 and zero points
    as int64; the size target is read on this column. Float recipes: none (their INT8 is the deploy stage's)."""
    from liteda.deploy.cli import export_main

    if not any(str(t).startswith("quantize:") and t != "quantize:ptdq" for t in res.get("techniques", [])):
        return None
    doc = export_main(["--run", str(out), "--runtime", "ort", "--precision", "int8"])
    return float(doc["artifacts"]["ort-int8"]["size_mb"])  # the export report's own measurement


def amp_speed(args, common: list[str], work: Callable[[str], Path]) -> list[dict]:
    """Recovery fine-tune throughput with the engine's amp switch off and on (same iterations)."""
    out = []
    for amp in ("none", "bf16"):
        res = run_row(common + ["--attention", "eca", "--ft-epochs", "1", "--ft-iters", str(args.amp_iters), "--amp",
                                   amp, "--latency-runs", "3"], work(f"amp-{amp}"))
        ft = res["stages"][0]["finetune"][0]
        out.append({"amp": amp, "iters": args.amp_iters, "seconds": ft["seconds"], "images_per_s": ft["images_per_s"]})
    return out


def run_row(argv: list[str], out: Path) -> dict:
    """One ``liteda compress`` run into ``out``; a finished one (its record written) with the same command is read
    back, so an interrupted benchmark resumes at the row it stopped in."""
    from liteda.compress.cli import PROG, main as compress

    argv = argv + ["--out", str(out)]
    if (out / "record.json").is_file() and (out / "results.json").is_file():
        res = read_json(out / "results.json")
        if res.get("command") == " ".join([PROG, *argv]):
            print(f"reusing {out / 'results.json'}", flush=True)
            return res
    return compress(argv)


def markdown(rows: list[dict], amp: list[dict], header: str) -> str:
    fmt = {"target_test_acc": "{:.2f}", "delta_acc": "{:+.2f}", "params": "{:,}", "macs": "{:,}",
           "file_mb": "{:.3f}", "onnx_int8_mb": "{:.3f}", "latency_ms_p50": "{:.2f}"}
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join("—" if r.get(c) is None else fmt.get(c, "{}").format(r[c]) for c in COLUMNS) + " |")
    if amp:
        lines += ["", "Recovery fine-tune speed, engine `amp` switch (same iterations):", "",
                  "| amp | iters | seconds | images/s |", "|---|---|---|---|"]
        lines += [f"| {a['amp']} | {a['iters']} | {a['seconds']:.1f} | {a['images_per_s']:.1f} |" for a in amp]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from liteda.compress.parent import read_run
    from liteda.utils import fail

    args = parse(argv)
    names = args.only or list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        fail(f"--only: unknown row '{unknown[0]}'; choose from {', '.join(ROWS)}")
    rec = read_run(args.run, "--run")
    seed_dir = Path(args.run).name

    def work(name: str) -> Path:
        return Path(args.work) / rec.dataset.name / rec.task / name / seed_dir

    common = ["--run", args.run, "--no-progress"]
    budget = ["--ft-epochs", args.ft_epochs, "--qat-epochs", args.ft_epochs, "--latency-runs", args.latency_runs]
    budget += ["--ft-iters", args.ft_iters] if args.ft_iters else []
    rows, runs = [], {}
    for name in names:
        res = run_row(common + budget + ROWS[name], work(name))
        runs[name] = {"command": res["command"], "stages": res["stages"], "after": res["after"]}
        if not rows:
            rows.append(row_of("uncompressed student", res, "before"))
            runs["uncompressed"] = res["before"]
        rows.append({**row_of(name, res), "onnx_int8_mb": onnx_int8_mb(work(name), res)})
    amp = amp_speed(args, common, work) if args.amp_iters > 0 else []
    task = rec.task
    load = os.getloadavg()[0]  # other jobs inflate latency alike for every row: compare rows, not machines
    header = (f"Compression of `{args.run}` ({rec.dataset.name} {task}, {rec.label}); fine-tune {args.ft_epochs} epochs"
              f"{' x ' + args.ft_iters + ' iters' if args.ft_iters else ''}; {machine_label()}; latency bs1, 1 thread "
              f"(PyTorch), 1-min load average {load:.1f} at the end")
    out = Path(args.results)
    write_json(out / f"compress_{task}.json", {"header": header, "rows": rows, "amp": amp, "runs": runs,
                                               "machine": machine_info(), "argv": argv or sys.argv[1:]})
    atomic_write_text(out / f"compress_{task}.md", markdown(rows, amp, header))
    csv = [",".join(COLUMNS)] + [",".join("" if r.get(c) is None else str(r[c]) for c in COLUMNS) for r in rows]
    atomic_write_text(out / f"compress_{task}.csv", "\n".join(csv) + "\n")
    print(markdown(rows, amp, header))


if __name__ == "__main__":
    os.environ.setdefault("LITEDA_THREADS", "1")  # before liteda reads it: one thread, steadier on a shared CPU
    sys.exit(run_cli(main))
