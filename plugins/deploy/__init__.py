"""Deployment: ONNX export, ONNX Runtime FP16/INT8, optional TensorRT, and the benchmark table.

``python examples/export.py --run DIR`` / ``python examples/bench.py --run DIR`` (see :mod:`.cli`).
"""
from .bench import Artifact, benchmark_artifact, run_benchmark, write_reports
from .onnx import export_onnx, read_metadata
from .ort import convert_fp16, make_session, pick_providers, quantize_int8
from .tensorrt import build_engine, trt_unavailable_reason

__all__ = ["Artifact", "benchmark_artifact", "run_benchmark", "write_reports", "export_onnx", "read_metadata",
           "convert_fp16", "make_session", "pick_providers", "quantize_int8", "build_engine", "trt_unavailable_reason"]
