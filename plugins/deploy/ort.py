"""ONNX Runtime: sessions with automatic providers, FP16 conversion and INT8 static quantization.

INT8 defaults come from ``benchmarks/`` measurements on a 2-core AVX2 CPU without VNNI (README numbers):
U8S8 with ``reduce_range`` (7-bit weights: AVX2's ``vpmaddubsw`` saturates 16-bit sums of full-range U8xS8
products, which costs accuracy without VNNI), per-channel weights, QDQ format (portable: OpenVINO and
TensorRT read the same file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..utils import fail
from .onnx import INPUT_NAME, read_metadata, save_onnx, set_metadata

CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_FORMATS = ("qdq", "qoperator")
# Ops left in FP32 by the FP16 conversion: reductions/normalisations whose accumulations overflow or lose
# precision in half, and the softmax-like tail (ORT's own float16 tool blocks a similar list by default).
FP16_BLOCK_OPS = ("GlobalAveragePool", "ReduceMean", "BatchNormalization", "Softmax", "LogSoftmax", "ArgMax",
                  "Resize", "Range", "NonMaxSuppression", "TopK", "Upsample")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def pick_providers(prefer_gpu: bool = True) -> list[str]:
    """TensorRT EP, then CUDA EP when this ORT build has them, CPU always last (the fallback)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in GPU_PROVIDERS if prefer_gpu and p in available]
    return chosen + ["CPUExecutionProvider"]


def make_session(path: str | os.PathLike, threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 spinning: bool = True, opt_level: str = "all"):
    """An ``InferenceSession`` with ``threads`` intra-op threads (``None``: ORT's choice = physical cores).

    ``spinning=False`` stops idle worker threads from busy-waiting: fairer on a shared CPU, slower at bs1.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        fail(f"ONNX file '{path}' does not exist")
    levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[opt_level]
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1  # one CNN branch at a time: extra inter-op threads only compete
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(path), so, providers=list(providers or pick_providers()))
    except Exception as e:  # noqa: BLE001 - a corrupt/unsupported file is a user-facing problem
        fail(f"onnxruntime cannot load '{path}': {str(e).splitlines()[0][:160]}")


def session_info(sess) -> dict:
    opts = sess.get_session_options()
    return {"providers": sess.get_providers(), "intra_op_threads": opts.intra_op_num_threads,
            "allow_spinning": opts.get_session_config_entry("session.intra_op.allow_spinning")}


# ----------------------------------------------------------------------------- FP16
def topological_sort(graph) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs."""
    produced = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:
            fail("FP16 conversion produced a graph with a cycle or a dangling input")
        for n in ready:
            produced.update(n.output)
        ordered += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, block_ops: Sequence[str] = FP16_BLOCK_OPS) -> str:
    """FP16 weights and activations, FP32 input/output (``keep_io_types``) so callers feed the same arrays.

    Uses ``onnxruntime.transformers.float16`` (ships with onnxruntime; same algorithm as onnxconverter-common).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    meta = read_metadata(src)
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(block_ops))
    topological_sort(half.graph)  # the converter appends its input Casts last; onnx.checker wants order
    set_metadata(half, {**meta, "precision": "fp16", "fp16_block_ops": list(block_ops)})
    onnx.checker.check_model(half)
    save_onnx(half, dst)
    return str(dst)


# ----------------------------------------------------------------------------- INT8
class ImageCalibrationReader(CalibrationDataReader):
    """``CalibrationDataReader`` over UNLABELED normalised images (N x 3 x H x W float32), in batches.

    Built from arrays, never from a loader with labels: calibration cannot see a target label.
    """

    def __init__(self, images: np.ndarray, batch_size: int = 16):
        if images.ndim != 4 or images.shape[1] != 3:
            fail(f"calibration images must be N x 3 x H x W, got shape {tuple(images.shape)}")
        self.images, self.batch_size = np.ascontiguousarray(images, dtype=np.float32), batch_size
        self._it: Iterator = iter(())
        self.rewind()

    def get_next(self) -> Optional[dict]:
        return next(self._it, None)

    def rewind(self) -> None:
        bs = self.batch_size
        self._it = iter({INPUT_NAME: self.images[i:i + bs]} for i in range(0, len(self.images), bs))

    def __len__(self) -> int:
        return len(self.images)


def calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if name.lower() not in table:
        fail(f"unknown calibration method '{name}' (--calib-method); choose from {', '.join(CALIB_METHODS)}")
    return table[name.lower()]


def depthwise_conv_nodes(path: str | os.PathLike) -> list[str]:
    """Names of grouped (depthwise) Conv nodes: candidates for ``nodes_to_exclude``."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calib_images: np.ndarray, method: str = "minmax",
                  fmt: str = "qdq", per_channel: bool = True, reduce_range: bool = True, weight_type: str = "s8",
                  exclude_depthwise: bool = False, batch_size: int = 16) -> dict:
    """Static INT8 (U8 activations) after ``quant_pre_process`` (shape inference + ORT graph optimisation).

    Returns the recipe as a dict (stored in the file's metadata too).
    """
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    if fmt not in INT8_FORMATS:
        fail(f"unknown INT8 format '{fmt}'; choose from {', '.join(INT8_FORMATS)}")
    if weight_type not in ("s8", "u8"):
        fail(f"unknown INT8 weight type '{weight_type}'; choose s8 or u8")
    if len(calib_images) == 0:
        fail("no calibration images (--calib-size must be positive and the target-train split non-empty)")
    meta = read_metadata(src)
    cm = calibration_method(method)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(dst).parent) as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(src), pre)
        out = os.path.join(tmp, "int8.onnx")
        excl = depthwise_conv_nodes(pre) if exclude_depthwise else []
        quantize_static(pre, out, ImageCalibrationReader(calib_images, batch_size),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8 if weight_type == "s8" else QuantType.QUInt8,
                        calibrate_method=cm, nodes_to_exclude=excl,
                        calibration_providers=["CPUExecutionProvider"])
        import onnx

        model = onnx.load(out)
    recipe = {"format": fmt, "activations": "u8", "weights": weight_type, "per_channel": per_channel,
              "reduce_range": reduce_range, "calib_method": method.lower(), "calib_images": int(len(calib_images)),
              "calib_data": "unlabeled target-train images", "excluded_nodes": len(excl)}
    set_metadata(model, {**meta, "precision": "int8", "int8_recipe": recipe})
    save_onnx(model, dst)
    return recipe
