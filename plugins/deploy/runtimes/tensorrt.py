"""TensorRT engines (optional: the ``tensorrt`` package and an NVIDIA GPU). Engines are built from the FP32 ONNX
(FP32/FP16, INT8 with TensorRT's entropy calibrator on unlabeled target-train images, FP8 from an E4M3 Q/DQ
file) or, for a model PyTorch quantized, from its INT8 QDQ export; they are cached under ``<deploy>/trt/`` by
content (:func:`liteda.deploy.tensorrt.engine_cache_path`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..artifact import FLOAT, TORCH_INT8, DeployArtifact, DeployContext, LoadedArtifact


def trt_loaded(engine_path: str | Path, precision: str, name: Optional[str] = None) -> LoadedArtifact:
    import torch

    from ..tensorrt import trt_runner

    return LoadedArtifact(name or f"trt-{precision}", "trt", precision, trt_runner(engine_path), str(engine_path),
                          {"threads": "-", "providers": f"TensorRT on {torch.cuda.get_device_name(0)}"})


class TrtEngine(DeployArtifact):
    runtime = "trt"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-batch", type=int, default=32, help="TensorRT profile's largest batch")

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("ort-fp32",)

    def environment(self, ctx: DeployContext) -> Optional[str]:
        from ..tensorrt import trt_unavailable_reason

        return trt_unavailable_reason()

    def build_precision(self, ctx: DeployContext) -> str:
        """The precision ``build_engine`` is asked for."""
        return self.precision

    def export(self, ctx: DeployContext) -> dict:
        from ..tensorrt import build_engine

        src = ctx.file_of(self.requires(ctx)[0])
        engine = build_engine(src, self.build_precision(ctx), ctx.crop, ctx.out / "trt", ctx.options.max_batch,
                              ctx.inputs.calib)
        print(f"TensorRT {self.build_precision(ctx)} engine: {engine}")
        return {"path": str(engine), "from": str(src), "size_mb": engine.stat().st_size / 1e6}

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return trt_loaded(ctx.file_of(self.name), self.precision, self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        return "from liteda.deploy.tensorrt import trt_runner\n\nrun = trt_runner(FILE)\n"


class TrtFP32(TrtEngine):
    name, precision, description = "trt-fp32", "fp32", "TensorRT FP32 engine"


class TrtFP16(TrtEngine):
    name, precision, description = "trt-fp16", "fp16", "TensorRT FP16 engine"


class TrtInt8(TrtEngine):
    """Float model: implicit INT8 with TensorRT's entropy calibrator. PTSQ/QAT model: explicit INT8 built from
    the Q/DQ nodes of its own export (no calibrator)."""

    name, precision = "trt-int8", "int8"
    model_kinds = (FLOAT, TORCH_INT8)
    description = "TensorRT INT8 engine (calibrated on unlabeled target-train; a PTSQ/QAT model: from its QDQ)"

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("ort-int8",) if ctx.model_kind == TORCH_INT8 else ("ort-fp32",)

    def build_precision(self, ctx: DeployContext) -> str:
        return "int8-qdq" if ctx.model_kind == TORCH_INT8 else "int8"


class TrtFP8(TrtEngine):
    name, precision, description = "trt-fp8", "fp8", "TensorRT FP8 (E4M3 Q/DQ) engine, compute capability >= 8.9"

    def environment(self, ctx: DeployContext) -> Optional[str]:
        from ..tensorrt import is_fp8_capable

        why = super().environment(ctx)
        if why is None and not is_fp8_capable():
            why = "FP8 engines need a GPU with compute capability >= 8.9 (Ada/Hopper)"
        return why
