"""``examples/export.py`` and ``examples/bench.py``: a run folder (or model.pt) -> ONNX FP32/FP16/INT8 (+ TensorRT
engines) -> a benchmark table with each artifact's own target-test accuracy.

Images come from the run's own splits (``<run>/splits/<letter>_{train,test}.txt``): calibration reads
target-TRAIN images with their labels dropped; target-TEST images (with labels) are only used to score.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..utils import OneLineParser, fail, read_json, run_cli, write_json

# int8w: INT8 weights, FP32 compute (weight-only; a size format). int8: ORT static INT8 compute.
PRECISIONS = ("fp32", "fp16", "int8", "int8w", "fp8", "bf16")
RUNTIMES = ("ort", "torch", "trt", "openvino", "cuda")  # cuda: PyTorch on the GPU
ONNX_PRECISIONS = ("fp32", "fp16", "int8", "int8w")


def build_parser(prog: str, bench: bool) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description="Benchmark deployable artifacts of a LiteDA model" if bench
                      else "Export a LiteDA model to ONNX FP32/FP16/INT8 (and TensorRT engines)")
    p.add_argument("root", nargs="?", default=None, help="dataset root (default: the run's results.json)")
    p.add_argument("-d", "--data", default=None, help="dataset name (default: the run's)")
    p.add_argument("-s", "--source", default=None, help="source domain (default: the run's)")
    p.add_argument("-t", "--target", default=None, help="target domain (default: the run's)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", default=None, help="run folder holding model.pt, results.json and splits/")
    src.add_argument("--ckpt", default=None, help="a model.pt (its folder is taken as the run folder), or a float "
                                                  "compressed.pt from examples/compress.py")
    p.add_argument("--precision", nargs="+", default=["fp32", "fp16", "int8"], help=f"any of {' '.join(PRECISIONS)}")
    p.add_argument("--runtime", nargs="+", default=["torch", "ort"] if bench else ["ort"],
                   help=f"any of {' '.join(RUNTIMES)}; trt without a GPU: "
                        + ("one-line note, ORT instead" if bench else "error"))
    p.add_argument("--calib-method", default="percentile",
                   help="INT8 calibration: minmax, entropy or percentile (default: closest to FP32 on unlabeled "
                        "target images in benchmarks/int8_fidelity.py)")
    p.add_argument("--calib-size", type=int, default=128, help="unlabeled target-train images for calibration")
    p.add_argument("--int8-format", choices=("qdq", "qoperator"), default="qdq")
    p.add_argument("--int8-weights", choices=("s8", "u8"), default="s8")
    p.add_argument("--int8-exclude", nargs="*", default=["stem"], metavar="GROUP",
                   help="node groups kept in float: stem depthwise head gates hardswish (default: stem, the "
                        "3-input-channel conv whose INT8 kernel is slower than FP32 on CPUs (README); give the "
                        "flag alone to quantize every node; benchmarks/int8_fidelity.py measures each group "
                        "without target labels)")
    p.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                   help="8-bit instead of 7-bit INT8 weights (fine on VNNI CPUs and GPUs; costs accuracy on AVX2)")
    p.add_argument("--per-tensor", dest="per_channel", action="store_false", help="per-tensor INT8 weights")
    p.add_argument("--threads", type=int, default=int(os.environ["LITEDA_THREADS"]) if os.environ.get("LITEDA_THREADS") else None,
                   help="intra-op threads for torch/ORT/OpenVINO (default: LITEDA_THREADS or the runtime's own)")
    p.add_argument("--out", default=None, help="artifact folder (default <run>/deploy)")
    p.add_argument("--cache-dir", default=os.environ.get("LITEDA_CACHE", "data/cache"), help="decoded-image cache")
    p.add_argument("--resize-size", type=int, default=None, help="default: the run's, else crop * 8/7")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--max-batch", type=int, default=32, help="TensorRT profile's largest batch")
    p.add_argument("--force", action="store_true", help="re-export even when artifacts are up to date")
    p.add_argument("--seed", type=int, default=0, help="which target-train images are drawn for calibration")
    if bench:
        p.add_argument("--iters", type=int, default=200, help="timed bs1 calls (bs32 calls: iters/20)")
        p.add_argument("--warmup", type=int, default=20)
        p.add_argument("--no-spinning", dest="spinning", action="store_false",
                       help="ORT: idle threads sleep instead of spinning (fairer on a shared CPU)")
        p.add_argument("--max-images", type=int, default=None, help="score on the first N target-test images only")
        p.add_argument("--report", default=None, help="write <REPORT>.{json,md,csv} (default <out>/bench)")
    return p


# ----------------------------------------------------------------------------- inputs
@dataclass
class DeployInputs:
    run_dir: Path
    ckpt: Path
    model: object
    rec: dict
    task: str
    calib: np.ndarray          # unlabeled target-train images, normalised N x 3 x H x W
    test_x: np.ndarray         # target-test images
    test_y: np.ndarray         # target-test labels (scoring only)
    run_results: dict


def _validate(args) -> None:
    bad = [p for p in args.precision if p not in PRECISIONS]
    if bad:
        fail(f"unknown precision '{bad[0]}' (--precision); choose from {', '.join(PRECISIONS)}")
    bad = [r for r in args.runtime if r not in RUNTIMES]
    if bad:
        fail(f"unknown runtime '{bad[0]}' (--runtime); choose from {', '.join(RUNTIMES)}")
    from .ort import calibration_method

    calibration_method(args.calib_method)
    if args.calib_size < 1:
        fail(f"--calib-size must be positive, got {args.calib_size}")
    if getattr(args, "iters", 1) < 1:
        fail("--iters must be positive")


def _resize_from_command(cmd: str) -> Optional[int]:
    m = re.search(r"--resize-size[ =](\d+)", cmd or "")
    return int(m.group(1)) if m else None


def normalised(images_u8, crop: int, mean, std) -> np.ndarray:
    """Cached uint8 N x H x W x 3 -> the run's test transform (CenterCrop + Normalize) as float32 NCHW."""
    import torch

    from ..datasets import build_transform

    tf = build_transform(False, crop, mean, std)
    return torch.stack([tf(img.permute(2, 0, 1)) for img in images_u8]).numpy()


def load_model_file(ckpt: Path) -> tuple[object, dict, Path, dict]:
    """(model, record, data run folder, run results) of a run's ``model.pt`` or of a float ``compressed.pt``.

    A compressed model's images and dataset come from the run it was compressed from (its results.json names
    it); its accuracy is the compressed one. An FX-quantized one (PTSQ/QAT) records ``torch_int8``: its only
    ONNX artifact is the INT8 QDQ export (``export_torch_int8``)."""
    from ..classifier import classifier_from_record, read_record
    from ..compress import FORMAT, compressed_from_record, source_run

    rec = read_record(ckpt)  # read once: the format says which kind of model it is
    if rec.get("format") != FORMAT:
        model = classifier_from_record(rec, ckpt)
        res = read_json(ckpt.parent / "results.json") if (ckpt.parent / "results.json").is_file() else {}
        return model, rec, ckpt.parent, res
    model = compressed_from_record(rec, ckpt)
    quant = next((op["kind"] for op in rec["ops"] if op["op"] == "quantize"), None)
    if quant == "ptdq":
        fail(f"'{ckpt}' is dynamically quantized by PyTorch, which has no ONNX form: compress without --quantize "
             "(ONNX Runtime makes --precision int8 / int8w) or with --quantize qat/ptsq (exported as INT8 QDQ)")
    info_path = ckpt.parent / "results.json"
    info = read_json(info_path) if info_path.is_file() else {}
    run_dir = source_run(info)
    if run_dir is None or not run_dir.is_dir():
        fail(f"'{info_path}' does not name the run folder '{ckpt}' was compressed from")
    res = read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else {}
    res = {**res, "target_test": info["after"]["target_test"], "compressed_from": info["ckpt"]}
    return model, {**rec["base"], "compression": [op["op"] for op in rec["ops"]], "torch_int8": quant}, run_dir, res


def load_inputs(args) -> DeployInputs:
    """Model, run metadata and the run's images (same splits as the run)."""
    from ..classifier import eval_resize
    from ..datasets import IMAGENET_MEAN, IMAGENET_STD, load_images, prepare_domains

    if args.run:
        run_dir = Path(args.run)
        if not run_dir.is_dir():
            fail(f"--run '{run_dir}' is not a folder")
        ckpt = run_dir / "model.pt"
        if not ckpt.is_file() and (run_dir / "compressed.pt").is_file():
            ckpt = run_dir / "compressed.pt"  # a compress output folder
    else:
        ckpt = Path(args.ckpt)
        run_dir = ckpt.parent
    if not ckpt.is_file():
        fail(f"checkpoint '{ckpt}' does not exist (--ckpt / --run)")
    model, rec, data_dir, res = load_model_file(ckpt)
    root, data = args.root or res.get("root"), args.data or res.get("dataset")
    source, target = args.source or res.get("source"), args.target or res.get("target")
    if not (root and data and target):
        fail(f"no results.json in '{run_dir}': pass the dataset as 'root -d DATA -s S -t T'")
    crop = int(rec.get("crop_size", 224))
    resize = eval_resize({**rec, "crop_size": crop}, args.resize_size, _resize_from_command(res.get("command", "")))
    split_dir = data_dir / "splits"
    if not split_dir.is_dir():
        print(f"note: '{split_dir}' missing: making default 80/20 splits there", file=sys.stderr)
    domains = [d for d in (source, target) if d]
    splits = prepare_domains(data, root, domains, split_dir)
    tgt = splits[target]
    rng = np.random.default_rng(args.seed)
    # unlabeled calibration set: target-train paths only, the label replaced by -1 right here
    calib_items = [(tgt.train[i][0], -1) for i in sorted(rng.permutation(len(tgt.train))[:args.calib_size])]
    mean, std = rec.get("mean") or IMAGENET_MEAN, rec.get("std") or IMAGENET_STD
    cimg, _ = load_images(root, calib_items, resize, args.cache_dir)
    timg, tlab = load_images(root, tgt.test, resize, args.cache_dir)
    n = getattr(args, "max_images", None) or len(tlab)
    task = res.get("task") or (f"{splits[source].letter}2{tgt.letter}" if source else tgt.letter)
    return DeployInputs(run_dir, ckpt, model, rec, task, normalised(cimg, crop, mean, std),
                        normalised(timg[:n], crop, mean, std), tlab[:n].numpy(), res)


# ----------------------------------------------------------------------------- export
def _ckpt_sha(path: Path) -> str:
    from .onnx import file_sha256

    return file_sha256(path)


def _up_to_date(path: Path, sha: str, recipe: Optional[dict] = None, compacted: bool = False) -> bool:
    """``compacted``: an INT8 file written before ``compact_onnx`` existed is out of date (same maths, larger)."""
    from .onnx import read_metadata

    if not path.is_file():
        return False
    meta = read_metadata(path)
    return (meta.get("source_sha256") == sha and (recipe is None or meta.get("recipe_args") == recipe)
            and (not compacted or "compacted_from_mb" in meta))


def export_torch_int8(args, inp: DeployInputs, out: Path, sha: str, report: dict) -> dict:
    """A PyTorch-quantized (PTSQ/QAT) model: one artifact, INT8 QDQ with the scales PyTorch calibrated or
    learned. FP32/FP16/int8w would need the float weights, which QAT has replaced."""
    import torch

    from .onnx import export_onnx, model_meta

    kind = inp.rec["torch_int8"]
    p = out / "model_int8.onnx"
    recipe = f"PyTorch FX {kind.upper()} exported as QDQ (scales from PyTorch, no ORT calibration)"
    info: dict = {"reused": True}
    if args.force or not _up_to_date(p, sha, compacted=True):
        info = export_onnx(inp.model, p, int(inp.rec.get("crop_size", 224)), args.opset, True,
                           model_meta(inp.rec, {"source_sha256": sha, "task": inp.task, "int8_recipe": recipe}),
                           torch.from_numpy(inp.test_x[:32]))
        print(f"int8 QDQ ONNX from PyTorch {kind}: {p} ({info['size_mb']:.2f} MB), top-1 agreement with PyTorch "
              f"{info['top1_agree_vs_torch']:.1f}% on {info['checked_on']}")
    report["artifacts"]["int8"] = {**info, "path": str(p), "recipe": recipe, **_sizes(p)}
    if "trt" in args.runtime:  # explicit quantization: TensorRT builds INT8 from the Q/DQ nodes, no calibrator
        from .tensorrt import build_engine

        eng = build_engine(p, "int8-qdq", int(inp.rec.get("crop_size", 224)), out / "trt", args.max_batch)
        report["artifacts"]["trt-int8"] = {"path": str(eng)}
        print(f"TensorRT int8 engine (QDQ): {eng}")
    skipped = [q for q in args.precision if q != "int8"]
    if skipped:
        print(f"note: {' '.join(skipped)} skipped: '{inp.ckpt}' holds INT8 weights only")
    write_json(out / "export.json", report)
    return report


def export_all(args, inp: DeployInputs, out: Path) -> dict:
    """FP32 ONNX always (every other artifact derives from it); FP16/INT8 as asked; TRT engines on a GPU."""
    import torch

    from .onnx import compact_onnx, export_onnx, model_meta, read_metadata
    from .ort import convert_fp16, quantize_int8, quantize_weights_int8

    out.mkdir(parents=True, exist_ok=True)
    sha = _ckpt_sha(inp.ckpt)
    report: dict = {"checkpoint": str(inp.ckpt), "source_sha256": sha, "artifacts": {}}
    if inp.rec.get("torch_int8"):
        return export_torch_int8(args, inp, out, sha, report)
    fp32 = out / "model_fp32.onnx"
    if args.force or not _up_to_date(fp32, sha):
        check = torch.from_numpy(inp.test_x[:32])
        info = export_onnx(inp.model, fp32, int(inp.rec.get("crop_size", 224)), args.opset, True,
                           model_meta(inp.rec, {"source_sha256": sha, "task": inp.task}), check)
        report["artifacts"]["fp32"] = info
        print(f"fp32 ONNX: {fp32} ({info['size_mb']:.2f} MB), max |logit diff| vs PyTorch "
              f"{info['max_abs_diff_vs_torch']:.2e} on {info['checked_on']}")
    else:
        report["artifacts"]["fp32"] = {"path": str(fp32), "reused": True}
    want = set(args.precision)
    if "fp16" in want:
        p = out / "model_fp16.onnx"
        if args.force or not _up_to_date(p, sha):
            convert_fp16(fp32, p)
            print(f"fp16 ONNX: {p}")
        report["artifacts"]["fp16"] = {"path": str(p)}
    if "int8" in want:
        p = out / "model_int8.onnx"
        recipe_args = {"method": args.calib_method.lower(), "fmt": args.int8_format, "per_channel": args.per_channel,
                       "reduce_range": args.reduce_range, "weight_type": args.int8_weights,
                       "exclude": sorted(args.int8_exclude), "calib_size": int(len(inp.calib)), "seed": args.seed}
        if args.force or not _up_to_date(p, sha, recipe_args, compacted=True):
            recipe = quantize_int8(fp32, p, inp.calib, method=args.calib_method, fmt=args.int8_format,
                                   per_channel=args.per_channel, reduce_range=args.reduce_range,
                                   weight_type=args.int8_weights, exclude=sorted(args.int8_exclude))
            _tag(p, {"recipe_args": recipe_args})
            size = compact_onnx(p)
            print(f"int8 ONNX: {p} ({recipe}; {size['mb_before']:.3f} -> {size['mb_after']:.3f} MB compacted)")
        report["artifacts"]["int8"] = {"path": str(p), "recipe": read_metadata(p).get("int8_recipe"), **_sizes(p)}
    if "int8w" in want:
        p = out / "model_int8w.onnx"
        if args.force or not _up_to_date(p, sha, compacted=True):
            recipe = quantize_weights_int8(fp32, p)
            size = compact_onnx(p)
            print(f"int8 weight-only ONNX: {p} ({recipe}; {size['mb_before']:.3f} -> {size['mb_after']:.3f} MB compacted)")
        report["artifacts"]["int8w"] = {"path": str(p), "recipe": read_metadata(p).get("int8w_recipe"), **_sizes(p)}
    if "trt" in args.runtime:
        from .tensorrt import build_engine

        for prec in [p for p in args.precision if p in ("fp16", "int8", "fp8", "fp32")]:
            eng = build_engine(fp32, prec, int(inp.rec.get("crop_size", 224)), out / "trt", args.max_batch, inp.calib)
            report["artifacts"][f"trt-{prec}"] = {"path": str(eng)}
            print(f"TensorRT {prec} engine: {eng}")
    write_json(out / "export.json", report)
    return report


def _sizes(path: Path) -> dict:
    """The file's MB, and before compaction when it was compacted (``compact_onnx`` writes that in its metadata)."""
    from .onnx import read_metadata

    before = read_metadata(path).get("compacted_from_mb")
    return {"size_mb": path.stat().st_size / 1e6, **({"size_mb_before_compaction": before} if before else {})}


def _tag(path: Path, extra: dict) -> None:
    import onnx

    from .onnx import save_onnx, set_metadata

    proto = onnx.load(str(path))
    set_metadata(proto, extra)
    save_onnx(proto, path)


def export_main(argv: Optional[list[str]] = None) -> dict:
    args = build_parser("export.py", bench=False).parse_args(argv)
    _validate(args)
    if "trt" in args.runtime:
        from .tensorrt import require_trt

        require_trt()  # asked for explicitly: an error, not a silent skip
    inp = load_inputs(args)
    out = Path(args.out) if args.out else inp.run_dir / "deploy"
    return export_all(args, inp, out)


# ----------------------------------------------------------------------------- bench
def bench_artifacts(args, inp: DeployInputs, out: Path, report: dict) -> list:
    from .bench import cuda_artifact, openvino_artifact, ort_artifact, torch_artifact, trt_artifact

    arts = []
    prec = list(dict.fromkeys(args.precision))
    if "cuda" in args.runtime and not inp.rec.get("torch_int8"):
        arts += [cuda_artifact(inp.model, p, graphs, str(inp.ckpt)) for p in ("fp32", "fp16", "bf16")
                 if p in prec for graphs in (False, True)]
    if "torch" in args.runtime:
        arts.append(torch_artifact(inp.model, "int8" if inp.rec.get("torch_int8") else "fp32", args.threads,
                                   str(inp.ckpt)))
        if "bf16" in prec and not inp.rec.get("torch_int8"):
            arts.append(torch_artifact(inp.model, "bf16", args.threads, str(inp.ckpt)))
    for p in prec:
        path = report["artifacts"].get(p, {}).get("path")
        if path and "ort" in args.runtime:
            arts.append(ort_artifact(path, p, args.threads, spinning=args.spinning))
        if path and "openvino" in args.runtime and p in ("fp32", "int8"):
            arts.append(openvino_artifact(path, p, args.threads))
        eng = report["artifacts"].get(f"trt-{p}", {}).get("path")
        if eng:
            arts.append(trt_artifact(eng, p))
    return arts


def bench_main(argv: Optional[list[str]] = None) -> dict:
    from .bench import run_benchmark, write_reports
    from .tensorrt import trt_unavailable_reason

    args = build_parser("bench.py", bench=True).parse_args(argv)
    _validate(args)
    if "trt" in args.runtime and (why := trt_unavailable_reason()):
        print(f"TensorRT unavailable ({why}): benchmarking ONNX Runtime instead", file=sys.stderr)
        args.runtime = [r for r in args.runtime if r != "trt"] + ([] if "ort" in args.runtime else ["ort"])
    inp = load_inputs(args)
    if inp.rec.get("torch_int8"):
        args.precision = ["int8"]  # its one artifact (export_torch_int8)
    elif set(args.runtime) - {"torch"}:
        args.precision = list(dict.fromkeys(["fp32", *args.precision]))  # every runtime needs the FP32 ONNX
    out = Path(args.out) if args.out else inp.run_dir / "deploy"
    report = export_all(args, inp, out)
    rows = run_benchmark(bench_artifacts(args, inp, out, report), inp.test_x, inp.test_y, args.iters, args.warmup)
    stem = Path(args.report) if args.report else out / "bench"
    tt = inp.run_results.get("target_test", {}).get("acc")
    meta = {"task": inp.task, "run": str(inp.run_dir), "checkpoint": str(inp.ckpt), "n_test": int(len(inp.test_y)),
            "n_calib": int(len(inp.calib)), "run_target_test_acc": tt, "iters": args.iters, "warmup": args.warmup,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "export": report}
    title = f"Deployment benchmark: {inp.task} ({inp.run_dir})"
    doc = write_reports(rows, stem, meta, title)
    print(f"report: {stem}.md / .json / .csv")
    return doc


def export_cli() -> None:
    sys.exit(run_cli(export_main))


def bench_cli() -> None:
    sys.exit(run_cli(bench_main))
