"""Speed-up of deployed artifacts over a baseline, measured interleaved (bs1, CPU).

    python benchmarks/latency_ratio.py --baseline RUN/kd/seed0 \\
        --candidates RUN/lowres/seed0/deploy/model_fp32.onnx openvino:RUN/lowres/seed0/deploy/model_fp32.onnx \\
        --threads 2 --out benchmarks/results/<folder>/latency_ratio_W2A

A run folder (or the model file its record names: model.pt, or a float compressed.pt) runs in PyTorch eager at
its record's crop size, an ``.onnx`` in ONNX Runtime (prefix ``openvino:`` for OpenVINO). Every round times a
block of calls of each artifact in a fresh random order, so a shared machine's drifting load reaches all of them
alike; the speed-up is the median of the per-round paired ratios with a bootstrap 95% interval
(``liteda.deploy.bench.interleaved_latency``/``paired_ratio``). Inputs are random images at each artifact's own
input size (latency does not depend on pixel values). Writes <out>.{json,md,csv}.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import numpy as np

from liteda.deploy.bench import interleaved_latency, paired_ratio
from liteda.deploy.runtimes.openvino import openvino_runner
from liteda.deploy.runtimes.ort import ort_runner
from liteda.deploy.runtimes.torch import torch_runner
from liteda.utils import (OneLineParser, atomic_write_text, fail, machine_info, machine_label, run_cli,
                           write_json)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog="latency_ratio.py", description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="a run folder or its model.pt / compressed.pt (PyTorch eager), "
                                                     "or an .onnx")
    p.add_argument("--candidates", nargs="+", required=True, help="[openvino:]FILE.onnx, openvino:IR.xml, or another run / .pt")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--calls", type=int, default=10, help="timed calls per artifact per round")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="write <OUT>.{json,md,csv}")
    a = p.parse_args(argv)
    if min(a.threads, a.rounds, a.calls) < 1 or a.warmup < 0:
        fail("--threads, --rounds and --calls must be positive, --warmup >= 0")
    return a


def label(spec: str) -> str:
    """'<run folder>/<file>' (e.g. lowres/model_int8.onnx; a non-default artifact folder is kept:
    kd/deploy_fs/model_int8.onnx), prefixed by its runtime when that is not the file's default."""
    runtime, path = split_spec(spec)
    parts = Path(path).parts
    seed = next((i for i in range(len(parts) - 1, 0, -1) if parts[i].startswith("seed")), None)
    if seed is None:  # a run folder outside a runs tree: its own name, then the file
        name = "/".join([q for q in parts if q != "deploy"][-2:])
    else:
        name = "/".join([parts[seed - 1], *[q for q in parts[seed + 1:] if q != "deploy"]])
    return f"{runtime}:{name}" if runtime == "openvino" else name


def labels(specs: list[str]) -> list[str]:
    """:func:`label` of each spec; runs of one name from different runs trees (``runs_t30/.../kd_strongaug`` and
    ``runs_160/.../kd_strongaug``) are told apart by the first folder in which their paths differ
    (``runs_160/kd_strongaug/model_int8.onnx``)."""
    names = [label(s) for s in specs]
    runs = [_run_folder(Path(split_spec(s)[1]).resolve()) for s in specs]
    for i, run in enumerate(runs):
        others = {r for r in runs if r is not None and run is not None and r != run and r.name == run.name}
        if others:
            where = next(a for k, a in enumerate(run.parts)
                         if any(k >= len(o.parts) or o.parts[k] != a for o in others))
            _, prefix, rest = names[i].rpartition("openvino:")
            names[i] = f"{prefix}{where}/{rest}"
    return names


def _run_folder(path: Path):
    """The run folder (parent of ``seed<k>``) a file or folder belongs to; None outside a runs tree."""
    parts = path.parts
    seed = next((i for i in range(len(parts) - 1, 0, -1) if parts[i].startswith("seed")), None)
    return Path(*parts[:seed]) if seed is not None else None


def split_spec(spec: str) -> tuple[str, str]:
    runtime, _, path = spec.partition(":") if spec.startswith("openvino:") else ("", "", spec)
    if not Path(path).exists():
        fail(f"'{path}' does not exist (--baseline / --candidates)")
    if runtime != "openvino" and path.endswith(".xml"):
        fail(f"'{path}': an OpenVINO IR runs on OpenVINO: give it as openvino:{path}")
    if runtime != "openvino":
        runtime = "torch" if Path(path).is_dir() or path.endswith(".pt") else "ort" if path.endswith(".onnx") else ""
    if not runtime:
        fail(f"'{path}': give a run folder or its .pt (PyTorch eager), or an .onnx file")
    return runtime, path


def build(spec: str, threads: int):
    """(artifact, its input size) of one spec."""
    runtime, path = split_spec(spec)
    if runtime == "torch":
        from liteda.deploy.inputs import load_model
        from liteda.record import read_record

        run = Path(path) if Path(path).is_dir() else Path(path).parent
        rec = read_record(run)
        model, model_file, _ = load_model(run, rec)
        if not Path(path).is_dir() and model_file.resolve() != Path(path).resolve():
            fail(f"'{path}' is not the model of its run folder (its record names '{model_file.name}')")
        return torch_runner(model, "fp32", threads, str(model_file)), int(rec.transform.crop)
    from liteda.deploy.onnx import read_metadata

    if path.endswith(".xml"):  # an OpenVINO IR carries no LiteDA metadata: it was made from the FP32 ONNX beside it
        meta = {**read_metadata(str(Path(path).with_name("model_fp32.onnx"))),
                "precision": "int8" if "int8" in Path(path).name else "fp32"}
    else:
        meta = read_metadata(path)
    size, precision = int(meta.get("crop_size", 224)), str(meta.get("precision", "fp32"))
    if runtime == "openvino":
        return openvino_runner(path, precision, threads), size
    return ort_runner(path, precision, threads), size


def fp32_sibling(name: str, art, built: dict) -> str | None:
    """The artifact timed here that is the FP32 ONNX file beside ``art`` on the same runtime (how much faster
    is the INT8 file than the FP32 one it was made from), or None."""
    if art.precision == "fp32" or not art.path or not str(art.path).endswith((".onnx", ".xml")):
        return None
    targets = {str(Path(art.path).with_name(f)) for f in ("model_fp32.onnx", "openvino_fp32.xml")}  # ONNX or its IR
    return next((n for n, (a, _) in built.items() if n != name and a.runtime == art.runtime
                 and a.path and str(a.path) in targets), None)


def markdown(doc: dict) -> str:
    lines = [f"# bs1 latency, interleaved ({doc['rounds']} rounds x {doc['calls']} calls, {doc['threads']} "
             f"thread(s))", "", f"Machine: {doc['machine_label']}; load average before/after: "
             f"{doc['loadavg_before']} / {doc['loadavg_after']}.", "", f"Command: `{doc['command']}`", "",
             "| artifact | runtime | precision | input px | median ms | p25-p75 ms | speed-up vs baseline (95% CI) "
             "| vs its FP32 file (95% CI) |", "|---|---|---|---|---|---|---|---|"]
    ratio = lambda s: f"{s['speedup_median']:.2f}x ({s['speedup_ci95'][0]:.2f}-{s['speedup_ci95'][1]:.2f})"  # noqa: E731
    for r in doc["rows"]:
        sp = "baseline" if r.get("speedup") is None else ratio(r["speedup"])
        fp = "–" if r.get("vs_fp32_file") is None else ratio(r["vs_fp32_file"])
        lines.append(f"| {r['name']} | {r['runtime']} | {r['precision']} | {r['input_px']} | {r['median_ms']:.2f} | "
                     f"{r['p25_ms']:.2f}-{r['p75_ms']:.2f} | {sp} | {fp} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> dict:
    a = parse_args(argv)
    specs = [a.baseline, *a.candidates]
    names = labels(specs)
    if len(set(names)) != len(names):
        fail("--baseline/--candidates name the same artifact twice")
    built = {n: build(s, a.threads) for n, s in zip(names, specs)}
    rng = np.random.default_rng(a.seed)
    inputs = {n: rng.standard_normal((1, 3, size, size)).astype(np.float32) for n, (_, size) in built.items()}
    load_before = os.getloadavg()
    blocks = interleaved_latency({n: art.run for n, (art, _) in built.items()}, inputs, a.rounds, a.calls,
                                 a.warmup, a.seed)
    load_after = os.getloadavg()
    rows = []
    for n, (art, size) in built.items():
        b = np.asarray(blocks[n])
        sib = fp32_sibling(n, art, built)
        rows.append({"name": n, "runtime": art.runtime, "precision": art.precision, "path": art.path, "input_px": size,
                     "median_ms": float(np.median(b)), "p25_ms": float(np.percentile(b, 25)),
                     "p75_ms": float(np.percentile(b, 75)), "block_means_ms": b.tolist(),
                     "speedup": None if n == names[0] else paired_ratio(blocks[names[0]], blocks[n]),
                     "vs_fp32_file": None if sib is None else {"fp32": sib, **paired_ratio(blocks[sib], blocks[n])}})
    info = machine_info()
    doc = {"schema": "liteda.latency_ratio/1", "machine": info, "machine_label": machine_label(info),
           "threads": a.threads, "rounds": a.rounds, "calls": a.calls, "warmup": a.warmup,
           "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
           "baseline": names[0], "rows": rows,
           "command": "python benchmarks/latency_ratio.py " + " ".join(argv)}
    out = Path(a.out)
    write_json(f"{out}.json", doc)
    atomic_write_text(f"{out}.md", markdown(doc))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["artifact", "runtime", "precision", "input_px", "median_ms", "p25_ms", "p75_ms", "speedup_median",
                "speedup_ci95_low", "speedup_ci95_high", "vs_fp32_file_median"])
    for r in rows:
        s = r["speedup"] or {"speedup_median": 1.0, "speedup_ci95": [1.0, 1.0]}
        f = r["vs_fp32_file"]
        w.writerow([r["name"], r["runtime"], r["precision"], r["input_px"], f"{r['median_ms']:.4f}",
                    f"{r['p25_ms']:.4f}", f"{r['p75_ms']:.4f}", f"{s['speedup_median']:.4f}",
                    f"{s['speedup_ci95'][0]:.4f}", f"{s['speedup_ci95'][1]:.4f}",
                    "" if f is None else f"{f['speedup_median']:.4f}"])
    atomic_write_text(f"{out}.csv", buf.getvalue())
    print(markdown(doc))
    return doc


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
