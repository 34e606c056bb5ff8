"""TensorRT engines (optional: needs the ``tensorrt`` package and an NVIDIA GPU; every import is guarded).

- FP16: builder flag on the FP32 ONNX.
- INT8: implicit quantization with an ``IInt8EntropyCalibrator2`` over UNLABELED target images (deprecated
  since TensorRT 10.1 in favour of Q/DQ ONNX, still available in 10.x; the INT8 QDQ ONNX from
  ``liteda.deploy.ort.quantize_int8`` is the explicit alternative and builds with ``precision="int8-qdq"``).
- FP8 (Hopper/Ada, compute capability >= 8.9): TensorRT only does FP8 by explicit quantization, so an FP8
  (E4M3) Q/DQ ONNX is made with onnxruntime's ``quantize_static`` and built with the FP8 + FP16 flags.
Device buffers are torch CUDA tensors (no pycuda needed; pycuda is used by nothing here).
Engines are cached by (ONNX sha256, input shape range, precision, TensorRT version, GPU name).

No engine has been built or measured on a GPU with this code yet: the API calls follow TensorRT 10.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..utils import atomic_write_bytes, fail
from .onnx import INPUT_NAME, OUTPUT_NAME, file_sha256

TRT_PRECISIONS = ("fp32", "fp16", "int8", "int8-qdq", "fp8")


def trt_unavailable_reason() -> Optional[str]:
    """``None`` when TensorRT can run here, else one line saying why not."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "torch is missing"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU visible (torch.cuda.is_available() is False)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the 'tensorrt' package is not installed (pip install tensorrt)"
    return None


def require_trt() -> None:
    why = trt_unavailable_reason()
    if why:
        fail(f"TensorRT cannot run here: {why}")


def is_fp8_capable() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= (8, 9)


def engine_cache_path(cache_dir: str | os.PathLike, onnx_path: str | os.PathLike, precision: str,
                      shape: tuple[int, int, int], max_batch: int) -> Path:
    """One engine file per (ONNX content, input shape, max batch, precision, TensorRT version, GPU)."""
    import tensorrt as trt
    import torch

    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(0)).strip("-")
    key = f"{file_sha256(onnx_path)}|{shape}|{max_batch}|{precision}|{trt.__version__}|{gpu}"
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{precision}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.engine"


def _entropy_calibrator(images: np.ndarray, batch_size: int, cache_file: Path):
    """An ``IInt8EntropyCalibrator2`` feeding unlabeled images from a torch CUDA buffer."""
    import tensorrt as trt
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.images, self.batch_size, self.pos = images.astype(np.float32), batch_size, 0
            self.buffer = torch.empty((batch_size, *images.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names):  # noqa: ARG002 - one input
            if self.pos + self.batch_size > len(self.images):
                return None
            self.buffer.copy_(torch.from_numpy(self.images[self.pos:self.pos + self.batch_size]))
            self.pos += self.batch_size
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_file, bytes(cache))

    return EntropyCalibrator()


def quantize_fp8_qdq(src: str | os.PathLike, dst: str | os.PathLike, calib_images: np.ndarray) -> str:
    """FP8 E4M3 Q/DQ ONNX (opset 19, per-tensor) for TensorRT's explicit FP8 path. onnxruntime allows only
    its Distribution calibration for float types; Conv/Gemm only, the rest stays for TensorRT to fuse."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .ort import ImageCalibrationReader

    quantize_static(str(src), str(dst), ImageCalibrationReader(calib_images), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QFLOAT8E4M3FN, weight_type=QuantType.QFLOAT8E4M3FN,
                    per_channel=False, calibrate_method=CalibrationMethod.Distribution, op_types_to_quantize=["Conv", "Gemm"],
                    calibration_providers=["CPUExecutionProvider"])
    return str(dst)


def build_engine(onnx_path: str | os.PathLike, precision: str, input_size: int, cache_dir: str | os.PathLike,
                 max_batch: int = 32, calib_images: Optional[np.ndarray] = None, workspace_gb: float = 2.0) -> Path:
    """Build (or reuse from the cache) a serialized engine with a dynamic batch profile 1..max_batch."""
    require_trt()
    import tensorrt as trt

    if precision not in TRT_PRECISIONS:
        fail(f"unknown TensorRT precision '{precision}'; choose from {', '.join(TRT_PRECISIONS)}")
    if precision == "fp8" and not is_fp8_capable():
        fail("FP8 engines need a GPU with compute capability >= 8.9 (Ada/Hopper)")
    if precision in ("int8", "fp8") and (calib_images is None or len(calib_images) == 0):
        fail(f"TensorRT {precision} needs calibration images (unlabeled target-train; --calib-size > 0)")
    shape = (3, input_size, input_size)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if precision == "fp8":  # explicit quantization: the Q/DQ ONNX is what gets built (and keyed)
        onnx_path = quantize_fp8_qdq(onnx_path, cache_dir / f"{Path(onnx_path).stem}-fp8-qdq.onnx", calib_images)
    out = engine_cache_path(cache_dir, onnx_path, precision, shape, max_batch)
    if out.is_file():
        return out
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        fail(f"TensorRT cannot parse '{onnx_path}': {parser.get_error(0).desc() if parser.num_errors else '?'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8", "int8-qdq", "fp8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized run in FP16, not FP32
    if precision in ("int8", "int8-qdq"):
        config.set_flag(trt.BuilderFlag.INT8)
    if precision == "int8":
        calib_bs = min(max_batch, len(calib_images))
        config.int8_calibrator = _entropy_calibrator(calib_images, calib_bs, out.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    if precision == "fp8":
        config.set_flag(trt.BuilderFlag.FP8)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        fail(f"TensorRT could not build a {precision} engine from '{onnx_path}' (see the TensorRT log above)")
    atomic_write_bytes(out, bytes(blob))
    return out


def trt_runner(engine_path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """``run(x: N x 3 x H x W float32) -> logits`` on the GPU (synchronous: timings include the copies)."""
    require_trt()
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        fail(f"engine '{engine_path}' cannot be loaded by this TensorRT/GPU (delete it to rebuild)")
    ctx = engine.create_execution_context()
    stream = torch.cuda.Stream()

    def run(x: np.ndarray) -> np.ndarray:
        inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda(non_blocking=True)
        ctx.set_input_shape(INPUT_NAME, tuple(inp.shape))
        out = torch.empty(tuple(ctx.get_tensor_shape(OUTPUT_NAME)), dtype=torch.float32, device="cuda")
        ctx.set_tensor_address(INPUT_NAME, inp.data_ptr())
        ctx.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        with torch.cuda.stream(stream):
            ctx.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy()

    run.engine = engine  # keep alive with the context
    return run
