"""Which INT8 recipe keeps a student's predictions? Chosen WITHOUT target labels, scored with them afterwards.

    python benchmarks/int8_fidelity.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results/int8_fidelity]

For each run folder (a training or compress run with a record.json and its deploy/model_fp32.onnx) and each
recipe in RECIPES (and each --prebuilt INT8 artifact, such as QAT's QDQ export from a sibling folder), ONNX Runtime
quantizes the FP32 ONNX (calibration: the same 128 unlabeled target-train images as the deploy stage) and the
INT8 model is compared with the FP32 one on ALL target-train images, labels unread: top-1 agreement and mean
KL(fp32 || int8). That is the selection criterion. bs1 latency (1 thread) is timed with the artifacts called in
turn. Target-test accuracy is computed last, only to report how well the label-free criterion tracked it.
Writes <out>.{json,md,csv}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from liteda.deploy.bench import interleaved_latency
from liteda.deploy.inputs import load_inputs
from liteda.deploy.ort import make_session, quantize_int8, quantize_weights_int8
from liteda.settings import cache_dir
from liteda.utils import atomic_write_text, fail, machine_info, machine_label, run_cli, write_json

ROOT = Path(__file__).resolve().parents[1]

BASE = {"method": "minmax", "fmt": "qdq", "per_channel": True, "reduce_range": True, "weight_type": "s8", "exclude": ()}
RECIPES = {
    "minmax": {},  # ORT's own default calibration
    "8bit-weights": {"reduce_range": False},
    "u8-weights": {"weight_type": "u8", "reduce_range": False},
    "entropy": {"method": "entropy"},
    "percentile": {"method": "percentile"},
    "float-stem": {"exclude": ("stem",)},
    "float-head": {"exclude": ("head",)},
    "float-gates": {"exclude": ("gates",)},
    "float-hardswish": {"exclude": ("hardswish",)},
    "float-depthwise": {"exclude": ("depthwise",)},
    "float-stem-head": {"exclude": ("stem", "head")},
    "percentile-float-stem": {"method": "percentile", "exclude": ("stem",)},  # the 3-channel stem: slowest in INT8
    "float-gates-hardswish": {"exclude": ("gates", "hardswish")},
    "qoperator": {"fmt": "qoperator"},
    "weight-only": {"weight_only": True},  # INT8 weights, FP32 compute: no activation quantization at all
}


def logits_of(path: str, images: np.ndarray, batch: int = 32) -> np.ndarray:
    sess = make_session(path, threads=1, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def fidelity(ref: np.ndarray, q: np.ndarray) -> dict:
    """Label-free closeness of INT8 logits to FP32 logits on the same images."""
    lp, lq = log_softmax(ref), log_softmax(q)
    kl = float((np.exp(lp) * (lp - lq)).sum(1).mean())
    return {"agree_fp32": 100.0 * float((ref.argmax(1) == q.argmax(1)).mean()), "kl_fp32": kl}


def deploy_inputs(run: Path):
    """All target-train images (unlabeled) + the deploy stage's calibration subset + target-test."""
    inp = load_inputs(run, calib_size=1_000_000, cache_dir=cache_dir())
    n = len(inp.calib)
    idx = sorted(np.random.default_rng(0).permutation(n)[:128])  # the deploy stage's draw (seed 0, 128 images)
    return inp, inp.calib[idx]


def quantize(fp32: Path, dst: Path, recipe: dict, calib: np.ndarray) -> dict:
    if recipe.get("weight_only"):
        return {**quantize_weights_int8(fp32, dst), "excluded_nodes": 0}
    r = {**BASE, **recipe}
    return quantize_int8(fp32, dst, calib, method=r["method"], fmt=r["fmt"], per_channel=r["per_channel"],
                         reduce_range=r["reduce_range"], weight_type=r["weight_type"], exclude=r["exclude"])


def interleaved_p50_ms(paths: dict, image: np.ndarray, iters: int) -> dict:
    """bs1 latency, 1 thread, the artifacts timed in interleaved blocks of 10 calls so a busy CPU slows all of
    them alike: the median block mean per artifact."""
    ort_sessions = {k: make_session(p, threads=1, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    runs = {k: (lambda x, s=sess: s.run(None, {s.get_inputs()[0].name: x})) for k, sess in ort_sessions.items()}
    blocks = interleaved_latency(runs, {k: image for k in runs}, rounds=max(1, iters // 10), calls=10)
    return {k: float(np.median(v)) for k, v in blocks.items()}


def prebuilt_path(run: Path, folder: str) -> Path:
    """The INT8 artifact a sibling stage made from this run: <task>/<folder>/seed<k>/deploy/model_int8.onnx."""
    return run.parent.parent / folder / run.name / "deploy" / "model_int8.onnx"


def measure_run(run: Path, recipes: dict, iters: int, prebuilt: Optional[dict] = None) -> list[dict]:
    fp32 = run / "deploy" / "model_fp32.onnx"
    if not fp32.is_file():
        fail(f"'{fp32}' does not exist: run liteda export --run {run} first")
    inp, calib = deploy_inputs(run)
    ref_train, ref_test = logits_of(str(fp32), inp.calib), logits_of(str(fp32), inp.test_x)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, meta = {"fp32": fp32}, {"fp32": {"excluded_nodes": 0}}
        for name, over in recipes.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            meta[name] = quantize(fp32, paths[name], over, calib)
        for name, folder in (prebuilt or {}).items():  # e.g. QAT's own QDQ export, scored by the same rule
            if not prebuilt_path(run, folder).is_file():
                fail(f"'{prebuilt_path(run, folder)}' does not exist (--prebuilt {name}={folder})")
            paths[name], meta[name] = prebuilt_path(run, folder), {"excluded_nodes": 0}
        p50 = interleaved_p50_ms(paths, inp.test_x[:1], iters) if iters else {}
        for name, path in paths.items():
            q_train, q_test = logits_of(str(path), inp.calib), logits_of(str(path), inp.test_x)
            rows.append({"task": inp.task, "run": str(run), "recipe": name, **fidelity(ref_train, q_train),
                         "n_unlabeled": len(inp.calib), "excluded_nodes": meta[name]["excluded_nodes"],
                         "size_mb": path.stat().st_size / 1e6, "p50_ms_1thread": p50.get(name),
                         "test_acc": 100.0 * float((q_test.argmax(1) == inp.test_y).mean()),
                         "fp32_test_acc": 100.0 * float((ref_test.argmax(1) == inp.test_y).mean())})
            print(f"{inp.task} {name:22s} agree {rows[-1]['agree_fp32']:.1f} KL {rows[-1]['kl_fp32']:.4f} "
                  f"test {rows[-1]['test_acc']:.1f} (fp32 {rows[-1]['fp32_test_acc']:.1f}) "
                  f"p50 {p50.get(name, float('nan')):.2f} ms", flush=True)
    return rows


def summary_markdown(rows: list[dict]) -> str:
    """Recipes x (mean agreement, mean KL, mean test-accuracy change vs FP32) over the runs."""
    lines = ["| recipe | agreement with FP32 on unlabeled target-train (%) | KL(fp32‖int8) | "
             "target-test acc (%) | Δ vs FP32 (pt) | size (MB) | bs1 p50 ms (1 thread) |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == name]
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("agree_fp32", "kl_fp32", "test_acc", "fp32_test_acc",
                                                              "size_mb")}
        ms = [r["p50_ms_1thread"] for r in rs if r["p50_ms_1thread"] is not None]
        lines.append(f"| {name} | {m['agree_fp32']:.1f} | {m['kl_fp32']:.4f} | {m['test_acc']:.1f} | "
                     f"{m['test_acc'] - m['fp32_test_acc']:+.1f} | {m['size_mb']:.2f} | "
                     f"{f'{np.mean(ms):.2f}' if ms else '–'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders with deploy/model_fp32.onnx")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"any of {' '.join(RECIPES)}")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8_fidelity"))
    p.add_argument("--iters", type=int, default=200, help="timed bs1 calls per artifact (0: no timing)")
    p.add_argument("--prebuilt", nargs="*", default=[], metavar="NAME=FOLDER",
                   help="also score <task>/FOLDER/seed<k>/deploy/model_int8.onnx under NAME (e.g. qat=compressed_qat)")
    a = p.parse_args(argv)
    bad = [r for r in a.recipes if r not in RECIPES]
    if bad:
        fail(f"unknown recipe '{bad[0]}' (--recipes); choose from {', '.join(RECIPES)}")
    if any("=" not in x for x in a.prebuilt):
        fail("--prebuilt takes NAME=FOLDER, e.g. qat=compressed_qat")
    prebuilt = dict(x.split("=", 1) for x in a.prebuilt)
    rows = [row for run in a.runs
            for row in measure_run(Path(run), {k: RECIPES[k] for k in a.recipes}, a.iters, prebuilt)]
    cmd = "python benchmarks/int8_fidelity.py " + " ".join(argv)
    head = (f"# INT8 recipes, selected without target labels\n\n{len(a.runs)} run(s); ONNX Runtime QDQ, U8 "
            f"activations; machine: {machine_label()}.\nSelection columns: agreement and KL "
            f"against the FP32 model on unlabeled target-train images. Target-test accuracy is reported only "
            f"afterwards.\n\nCommand: `{cmd}`\n\n")
    write_json(a.out + ".json", {"command": cmd, "machine": machine_info(), "base": {**BASE, "exclude": []},
                                 "recipes": {k: {**v, **({"exclude": list(v["exclude"])} if "exclude" in v else {})}
                                             for k, v in RECIPES.items() if k in a.recipes},
                                 "prebuilt": prebuilt, "rows": rows})
    atomic_write_text(a.out + ".md", head + summary_markdown(rows))
    keys = list(rows[0])
    atomic_write_text(a.out + ".csv", ",".join(keys) + "\n" + "\n".join(",".join(str(r[k]) for k in keys)
                                                                          for r in rows) + "\n")
    print(summary_markdown(rows))


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
