"""OpenVINO's CPU runtime on the ONNX files ONNX Runtime's artifacts wrote (an INT8 QDQ file runs as INT8)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...utils import fail
from ..artifact import FLOAT, TORCH_INT8, DeployArtifact, DeployContext, LoadedArtifact

NOT_INSTALLED = "openvino not installed (pip install openvino)"


def openvino_runner(path: str | Path, precision: str, threads: Optional[int] = None) -> LoadedArtifact:
    try:
        import openvino as ov
    except ImportError:
        fail(NOT_INSTALLED)
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    req = ov.Core().compile_model(str(path), "CPU", cfg).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return req.infer({0: x})[0].copy()

    return LoadedArtifact(f"openvino-{precision}", "openvino", precision, run, str(path),
                          {"threads": threads or "openvino default",
                           "providers": f"OpenVINO {ov.__version__.split('-')[0]} CPU"})


class OpenVinoOnnx(DeployArtifact):
    """Runs the file of ``source`` (no file of its own)."""

    runtime = "openvino"
    source = ""

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return (self.source,)

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return None if importlib.util.find_spec("openvino") else NOT_INSTALLED

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return openvino_runner(ctx.file_of(self.source), self.precision, ctx.options.threads)


class OpenVinoFP32(OpenVinoOnnx):
    name, precision, source = "openvino-fp32", "fp32", "ort-fp32"
    description = "OpenVINO CPU on the FP32 ONNX"


class OpenVinoInt8(OpenVinoOnnx):
    name, precision, source = "openvino-int8", "int8", "ort-int8"
    model_kinds = (FLOAT, TORCH_INT8)
    description = "OpenVINO CPU on the INT8 QDQ ONNX of ort-int8"
