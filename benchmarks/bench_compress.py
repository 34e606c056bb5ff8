"""Compression benchmark for one run folder: each technique alone + combined recipes, beside the uncompressed
student -> benchmarks/results/compress_<task>.{json,md,csv}.

Every row is one ``examples/compress.py`` call (same images, same self-distillation budget); columns:
target-test accuracy, params, MACs, compressed.pt MB, bs1 CPU latency (1 thread, p50). A last section
measures the engine's bf16 autocast switch on the recovery fine-tune (images/s, none vs bf16).

    python benchmarks/bench_compress.py --ckpt runs/OfficeCaltech/A2W/<method>/seed0/model.pt \\
        ../shared/datasets/office_caltech_10 -d OfficeCaltech -s A -t W --ft-epochs 2
Tiny check: add ``--ft-iters 2 --latency-runs 5 --only prune-0.5 ptsq combined-eca-p0.35-qat``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional


from liteda.utils import (atomic_write_text, benchmark_parser, machine_info, machine_label, read_json,
                           run_cli, write_json)

RECIPES: dict[str, list[str]] = {
    "prune-0.5": ["--prune", "0.5"],
    "prune-0.5-taylor-2steps": ["--prune", "0.5", "--prune-importance", "taylor", "--prune-steps", "2"],
    "prune-0.5-global": ["--prune", "0.5", "--prune-global"],
    "lowrank-0.9": ["--lowrank-energy", "0.9"],
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
    # size-target recipes (<= 1.0 MB): SE -> ECA drops ~0.46 M params; pruning or low-rank shrinks the
    # 576->1024->256 Linears. INT8 files measured on the 10-class model: eca+p0.3 1.01 MB, eca+p0.35 0.93 MB,
    # eca+Linear low-rank ratio 0.25 0.97 MB; eca+p0.35 with channels rounded to multiples of 8 0.90 MB
    # (round-to-8: INT8 fbgemm kernels measured 17 -> 12 ms bs1 at 224 px vs odd channel counts)
    "combined-eca-p0.35-ptsq": ["--attention", "eca", "--prune", "0.35", "--prune-round-to", "8", "--quantize", "ptsq"],
    "combined-eca-p0.35-qat": ["--attention", "eca", "--prune", "0.35", "--prune-round-to", "8", "--quantize", "qat",
                               "--qat-lr", "0.0005"],
    "combined-eca-lrlin0.25-qat": ["--attention", "eca", "--lowrank-ratio", "0.25", "--lowrank-layers", "linear",
                                   "--quantize", "qat", "--qat-lr", "0.0005"],
    # keeping SE: the SE blocks' 1x1 convs (0.46 M params, few MACs) and the Linear tail factorised at one ratio
    # (params, 10-class model: 0.80 M at 0.25, 0.67 M at 0.15; eca+lrlin0.25 above: 0.68 M, a 0.97 MB INT8 file)
    "combined-lrlinse0.25-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                 "--qat-lr", "0.0005"],
    "combined-lrlinse0.2-qat": ["--lowrank-ratio", "0.2", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                "--qat-lr", "0.0005"],
    "combined-lrlinse0.15-qat": ["--lowrank-ratio", "0.15", "--lowrank-layers", "linear+se", "--quantize", "qat",
                                 "--qat-lr", "0.0005"],
    # the same size, data-aware: the SVD truncates W S (S: Cholesky factor of each layer's input second moment on
    # unlabeled target-train images), so the ranks drop what moves the outputs least on the target domain
    # (no fine-tune, held-out target-train top-1 agreement: W->A 95.0 % vs 84.0 % plain, A->W 97.2 vs 78.7;
    # benchmarks/lowrank_alloc.py)
    "combined-lrlinse0.25-full-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--lowrank-whiten",
                                      "full", "--quantize", "qat", "--qat-lr", "0.0005"],
    # ... and its 2-epoch fine-tune kept only if it raises the label-free agreement (on W->A it lowered it)
    "combined-lrlinse0.25-full-guard-qat": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se",
                                            "--lowrank-whiten", "full", "--ft-guard", "--quantize", "qat",
                                            "--qat-lr", "0.0005"],
    # ... with static INT8 (calibration only) instead of QAT's fine-tune on the target-train images
    "combined-lrlinse0.25-full-guard-ptsq": ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se",
                                             "--lowrank-whiten", "full", "--ft-guard", "--quantize", "ptsq"],
}
# the same <= 1 MB recipe with a 5-epoch fine-tune after each stage (a recipe's flags override the budget):
# how much of its loss is the fine-tune budget rather than the technique
RECIPES["combined-eca-lrlin0.25-qat-ft5"] = RECIPES["combined-eca-lrlin0.25-qat"] + ["--ft-epochs", "5"]
COLUMNS = ("technique", "target_test_acc", "delta_acc", "params", "macs", "file_mb", "onnx_int8_mb", "latency_ms_p50")


def parse(argv):
    p = benchmark_parser(__doc__)
    p.add_argument("--only", nargs="*", default=None, help=f"subset of: {' '.join(RECIPES)}")
    p.add_argument("--ft-epochs", default="2")
    p.add_argument("--ft-iters", default=None)
    p.add_argument("--latency-runs", default="50")
    p.add_argument("--resize-size", default=None, help="default: the checkpoint's test resize")
    p.add_argument("--amp-iters", type=int, default=10, help="iterations for the bf16 speed check (0: skip)")
    p.add_argument("--work", default=None, help="artifacts folder (default <run>/compress_bench)")
    p.add_argument("--results", default="benchmarks/results")
    return p.parse_args(argv)


def row_of(name: str, res: dict, which: str = "after") -> dict:
    r = res[which]
    return {"technique": name, "target_test_acc": r["target_test"]["acc"],
            "delta_acc": r["target_test"]["acc"] - res["before"]["target_test"]["acc"], "params": r["params"],
            "macs": r.get("macs"), "file_mb": r.get("file_mb"), "latency_ms_p50": r["latency_ms_p50"]}


def onnx_int8_mb(out: Path, res: dict) -> Optional[float]:
    """The deployable file of a PyTorch-quantized recipe (PTSQ/QAT): its INT8 QDQ ONNX, compacted as the deploy
    stage writes it. ``file_mb`` is PyTorch's pickle, which stores per-channel scales as float64 and zero points
    as int64; the size target is read on this column. Float recipes: none (their INT8 is the deploy stage's)."""
    from liteda.deploy.cli import export_main

    if not any(str(t).startswith("quantize:") and t != "quantize:ptdq" for t in res.get("techniques", [])):
        return None
    doc = export_main(["--run", str(out), "--precision", "int8"])
    return float(doc["artifacts"]["int8"]["size_mb"])  # the export report's own measurement


def amp_speed(args, common: list[str], work: Path) -> list[dict]:
    """Recovery fine-tune throughput with the engine's amp switch off and on (same iterations)."""
    from liteda.compress.pipeline import main as compress

    out = []
    for amp in ("none", "bf16"):
        res = run_recipe(compress, common + ["--attention", "eca", "--ft-epochs", "1", "--ft-iters",
                                             str(args.amp_iters), "--amp", amp, "--latency-runs", "3", "--out",
                                             str(work / f"amp-{amp}")], work / f"amp-{amp}")
        ft = res["stages"][0]["finetune"][0]
        out.append({"amp": amp, "iters": args.amp_iters, "seconds": ft["seconds"], "images_per_s": ft["images_per_s"]})
    return out


def run_recipe(compress, argv: list[str], out: Path) -> dict:
    """One compress.py call; a finished one with the same command is read back, so an interrupted benchmark
    resumes at the recipe it stopped in."""
    done = out / "results.json"
    if done.is_file():
        res = read_json(done)
        if res.get("command") == " ".join(["compress.py"] + argv):
            print(f"reusing {done}", flush=True)
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
    from liteda.compress.pipeline import main as compress
    from liteda.utils import fail

    args = parse(argv)
    names = args.only or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        fail(f"--only: unknown recipe '{unknown[0]}'; choose from {', '.join(RECIPES)}")
    work = Path(args.work) if args.work else Path(args.ckpt).parent / "compress_bench"
    common = [args.root, "-d", args.data, "-s", args.source, "-t", args.target, "--ckpt", args.ckpt, "--no-progress"]
    common += ["--resize-size", args.resize_size] if args.resize_size else []
    budget = ["--ft-epochs", args.ft_epochs, "--latency-runs", args.latency_runs]
    budget += ["--ft-iters", args.ft_iters] if args.ft_iters else []
    rows, runs = [], {}
    for name in names:
        res = run_recipe(compress, common + budget + RECIPES[name] + ["--out", str(work / name)], work / name)
        runs[name] = {"command": res["command"], "stages": res["stages"], "after": res["after"]}
        if not rows:
            rows.append(row_of("uncompressed student", res, "before"))
            runs["uncompressed"] = res["before"]
        rows.append({**row_of(name, res), "onnx_int8_mb": onnx_int8_mb(work / name, res)})
    amp = amp_speed(args, common, work) if args.amp_iters > 0 else []
    task = f"{args.source}2{args.target}"
    load = os.getloadavg()[0]  # other jobs inflate latency alike for every row: compare rows, not machines
    header = (f"Compression of `{args.ckpt}` ({args.data} {task}); fine-tune {args.ft_epochs} epochs"
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
    os.environ.setdefault("LITEDA_THREADS", "1")
    sys.exit(run_cli(main))
