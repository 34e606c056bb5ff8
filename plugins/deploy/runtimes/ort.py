"""ONNX Runtime artifacts: the FP32 ONNX (every other file derives from it), FP16, static INT8 and weight-only
INT8. The conversions themselves live in :mod:`liteda.deploy.onnx` and :mod:`liteda.deploy.ort`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..artifact import FLOAT, TORCH_INT8, DeployContext, LoadedArtifact, OnnxFile


def ort_runner(path: str | Path, precision: str, threads: Optional[int] = None,
               providers: Optional[Sequence[str]] = None, spinning: bool = True,
               name: Optional[str] = None) -> LoadedArtifact:
    """An ``InferenceSession`` on ``path`` (providers: TensorRT/CUDA EP when this ORT build has them, CPU last)."""
    from ..onnx import INPUT_NAME
    from ..ort import make_session, session_info

    sess = make_session(path, threads, providers, spinning)
    info = session_info(sess)

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {INPUT_NAME: x})[0]

    return LoadedArtifact(name or f"ort-{precision}", "ort", precision, run, str(path),
                          {"threads": info["intra_op_threads"] or "ort default",
                           "providers": ",".join(info["providers"]), "allow_spinning": info["allow_spinning"]})


def ort_loader_code(threads: Optional[int], weight_only: bool) -> str:
    """Example lines: an ``InferenceSession`` set up as the benchmark's (GPU providers when this build has them)."""
    from ..onnx import INPUT_NAME
    from ..ort import GPU_PROVIDERS

    return ("import onnxruntime as ort\n\n"
            "options = ort.SessionOptions()\n"
            + (f"options.intra_op_num_threads = {int(threads)}\n" if threads else "")
            + ("options.add_session_config_entry(\"session.disable_quant_qdq\", \"1\")  # INT8 weights: "
               "dequantized once at load\n" if weight_only else "")
            + f"providers = [p for p in {list(GPU_PROVIDERS)!r} if p in ort.get_available_providers()]\n"
              "sess = ort.InferenceSession(FILE, options, providers=providers + [\"CPUExecutionProvider\"])\n\n\n"
              "def run(x):\n"
              f"    return sess.run(None, {{{INPUT_NAME!r}: x}})[0]\n")


class OrtFile(OnnxFile):
    runtime = "ort"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset of the exported files")
        parser.add_argument("--no-spinning", dest="spinning", action="store_false",
                            help="ONNX Runtime: idle threads sleep instead of spinning (fairer on a shared CPU)")

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return ort_runner(ctx.file_of(self.name), self.precision, ctx.options.threads,
                          spinning=ctx.options.spinning, name=self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        return ort_loader_code(ctx.options.threads, self.precision == "int8w")


class OrtFP32(OrtFile):
    name, precision, file = "ort-fp32", "fp32", "model_fp32.onnx"
    description = "FP32 ONNX (the file every other ONNX artifact and engine is made from)"

    def recipe(self, ctx: DeployContext) -> dict:
        return {"opset": ctx.options.opset}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        info = export_from_torch(ctx, path)
        print(f"fp32 ONNX: {path} ({info['size_mb']:.2f} MB), max |logit diff| vs PyTorch "
              f"{info['max_abs_diff_vs_torch']:.2e} on {info['checked_on']}")
        return info


def export_from_torch(ctx: DeployContext, path: Path, meta: Optional[dict] = None) -> dict:
    """The run's PyTorch model as ONNX at ``path`` (its record's metadata inside), checked against PyTorch on the
    first target-test images."""
    import torch

    from ..onnx import export_onnx, model_meta

    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(ctx.inputs.model, path, ctx.crop, ctx.options.opset, True,
                       model_meta(ctx.inputs.record, meta or {}), torch.from_numpy(ctx.inputs.test_x[:32]))


class OrtFP16(OrtFile):
    name, precision, file = "ort-fp16", "fp16", "model_fp16.onnx"
    description = "FP16 weights and activations, FP32 input/output (GPU execution providers)"

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("ort-fp32",)

    def recipe(self, ctx: DeployContext) -> dict:
        from ..ort import FP16_BLOCK_OPS

        return {"block_ops": list(FP16_BLOCK_OPS)}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..ort import convert_fp16

        convert_fp16(ctx.file_of("ort-fp32"), path)
        print(f"fp16 ONNX: {path}")
        return {}


class OrtInt8(OrtFile):
    """Static INT8 (QDQ) calibrated on unlabeled target-train images; for a model PyTorch quantized (PTSQ/QAT),
    its own QDQ export with the scales PyTorch calibrated or learned (FP32/FP16/int8w would need the float
    weights, which QAT has replaced)."""

    name, precision, file = "ort-int8", "int8", "model_int8.onnx"
    model_kinds = (FLOAT, TORCH_INT8)
    description = "ORT static INT8 (QDQ) calibrated on unlabeled target-train; a PTSQ/QAT model: its own QDQ"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        p = parser.add_argument_group("INT8 (ort-int8, and the runtimes that read its file)")
        p.add_argument("--calib-method", default="percentile",
                       help="INT8 calibration: minmax, entropy or percentile (default: closest to FP32 on unlabeled "
                            "target images in benchmarks/int8_fidelity.py)")
        p.add_argument("--int8-format", choices=("qdq", "qoperator"), default="qdq")
        p.add_argument("--int8-weights", choices=("s8", "u8"), default="s8")
        p.add_argument("--int8-exclude", nargs="*", default=["stem"], metavar="GROUP",
                       help="node groups kept in float: stem depthwise head gates hardswish (default: stem, the "
                            "3-input-channel conv whose INT8 kernel is slower than FP32 on CPUs; give the flag alone "
                            "to quantize every node; benchmarks/int8_fidelity.py measures each group without "
                            "target labels)")
        p.add_argument("--reduce-range", dest="reduce_range", action="store_true", default=None,
                       help="7-bit INT8 weights, which every x86 INT8 kernel sums exactly (default: only on CPUs "
                            "without an INT8 dot product, i.e. AVX2 alone)")
        p.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                       help="8-bit INT8 weights (default on CPUs with VNNI, AMX or an Arm dot product; AVX2 alone "
                            "saturates them)")
        p.add_argument("--per-tensor", dest="per_channel", action="store_false", help="per-tensor INT8 weights")

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> None:
        from ..ort import calibration_method

        calibration_method(args.calib_method)

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return () if ctx.model_kind == TORCH_INT8 else ("ort-fp32",)

    def recipe(self, ctx: DeployContext) -> dict:
        o = ctx.options
        if ctx.model_kind == TORCH_INT8:
            return {"torch_quantized": ctx.inputs.torch_int8, "weight_bits": ctx.inputs.torch_weight_bits,
                    "opset": o.opset}
        return {"method": o.calib_method.lower(), "fmt": o.int8_format, "per_channel": o.per_channel,
                "reduce_range": reduce_range(o), "weight_type": o.int8_weights, "exclude": sorted(o.int8_exclude),
                "calib_size": int(len(ctx.inputs.calib)), "seed": o.seed}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..onnx import compact_onnx
        from ..ort import quantize_int8

        if ctx.model_kind == TORCH_INT8:
            return self._export_torch_quantized(ctx, path)
        o = ctx.options
        recipe = quantize_int8(ctx.file_of("ort-fp32"), path, ctx.inputs.calib, method=o.calib_method,
                               fmt=o.int8_format, per_channel=o.per_channel, reduce_range=reduce_range(o),
                               weight_type=o.int8_weights, exclude=sorted(o.int8_exclude))
        size = compact_onnx(path)
        print(f"int8 ONNX: {path} ({recipe}; {size['mb_before']:.3f} -> {size['mb_after']:.3f} MB compacted)")
        return {}

    def _export_torch_quantized(self, ctx: DeployContext, path: Path) -> dict:
        from ..machine import cpu_flags, int8_weight_bits

        kind, bits = ctx.inputs.torch_int8, ctx.inputs.torch_weight_bits
        recipe = f"PyTorch FX {kind.upper()} exported as QDQ ({bits}-bit weights; scales from PyTorch, no ORT calibration)"
        if bits > int8_weight_bits(cpu_flags())[0]:
            print(f"warning: {ctx.inputs.model_file} has {bits}-bit INT8 weights, made for a CPU with an INT8 dot "
                  "product; this CPU has none and may saturate them: compress with --weight-bits 7 for it", flush=True)
        info = export_from_torch(ctx, path, {"int8_recipe": recipe, "int8_weight_bits": bits})
        print(f"int8 QDQ ONNX from PyTorch {kind}: {path} ({info['size_mb']:.2f} MB), top-1 agreement with "
              f"PyTorch {info['top1_agree_vs_torch']:.1f}% on {info['checked_on']}")
        return info


def reduce_range(options: argparse.Namespace) -> bool:
    """ONNX Runtime's 7-bit weights: as asked (--reduce-range / --no-reduce-range), else where this CPU has no INT8
    dot product (:func:`liteda.deploy.machine.int8_weight_bits`)."""
    if options.reduce_range is not None:
        return options.reduce_range
    from ..machine import cpu_flags, int8_weight_bits

    return int8_weight_bits(cpu_flags())[0] == 7


class OrtInt8Weights(OrtFile):
    name, precision, file = "ort-int8w", "int8w", "model_int8w.onnx"
    description = "INT8 weights, FP32 compute (weight-only: a size format, no calibration)"

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("ort-fp32",)

    def recipe(self, ctx: DeployContext) -> dict:
        return {"mode": "weight-only", "compacted": True}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..onnx import compact_onnx
        from ..ort import quantize_weights_int8

        recipe = quantize_weights_int8(ctx.file_of("ort-fp32"), path)
        size = compact_onnx(path)
        print(f"int8 weight-only ONNX: {path} ({recipe}; {size['mb_before']:.3f} -> {size['mb_after']:.3f} MB "
              "compacted)")
        return {}
