"""ONNX Runtime: InferenceSessions with automatic providers, FP16 conversion and INT8 static quantization.

INT8 defaults come from ``benchmarks/int8_fidelity.py`` and the deployment benchmarks on an AVX2 CPU without VNNI:
U8S8 with ``reduce_range`` (7-bit weights: AVX2's ``vpmaddubsw`` saturates 16-bit sums of full-range U8xS8
products, which costs accuracy without VNNI), per-channel weights, percentile calibration (the recipe closest
to FP32 on unlabeled target images, ``benchmarks/int8_fidelity.py``), QDQ format (portable: OpenVINO and
TensorRT read the same file). ``quantize_weights_int8`` is the weight-only alternative: INT8 on disk, FP32
compute.
"""
from __future__ import annotations

import os
import sys
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
    if is_weight_only(path):
        # without this ORT keeps the weights' DequantizeLinear for QDQ fusion and runs it on every call
        # (slower); with it the int8 weights are dequantized once at load, FP32 compute
        so.add_session_config_entry("session.disable_quant_qdq", "1")
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


# ----------------------------------------------------------------------------- INT8 weights only
WEIGHT_OPS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}  # op -> output-channel axis of its weight (input 1)


def _weight_axis(node) -> int:
    if node.op_type == "Gemm":  # B is (K, N) unless transB
        return 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
    return WEIGHT_OPS[node.op_type]


def is_weight_only(path: str | os.PathLike) -> bool:
    try:
        return read_metadata(path).get("precision") == "int8w"
    except Exception:  # noqa: BLE001 - unreadable: InferenceSession reports it in one line
        return False


def quantize_weights_int8(src: str | os.PathLike, dst: str | os.PathLike, min_elements: int = 256) -> dict:
    """Weight-only INT8: each Conv/Gemm/MatMul weight stored as symmetric per-output-channel int8 plus a
    ``DequantizeLinear``; activations stay FP32, so no calibration and no activation-quantization error.

    The file is ~4x smaller than FP32; ``make_session`` dequantizes once at load (FP32 speed). ORT's static
    INT8 (``quantize_int8``) computes in INT8 instead, which on CPUs without VNNI is slower and, on these
    low-margin target predictions, less accurate (benchmarks/int8_fidelity.py).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    users: dict[str, list] = {}
    for n in graph.node:
        for k, name in enumerate(n.input):
            users.setdefault(name, []).append((n, k))
    dq_nodes, n_q, n_elems = [], 0, 0
    for init in list(graph.initializer):
        us = users.get(init.name, [])
        if not us or any(k != 1 or n.op_type not in (*WEIGHT_OPS, "Gemm") for n, k in us):
            continue  # only tensors used purely as a layer weight
        w = numpy_helper.to_array(init).astype(np.float32)
        axes = {_weight_axis(n) for n, _ in us}
        if w.size < min_elements or len(axes) != 1:
            continue
        axis = axes.pop()
        other = tuple(i for i in range(w.ndim) if i != axis)
        scale = np.abs(w).max(axis=other) / 127.0
        scale[scale == 0] = 1.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, f"{init.name}_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{init.name}_scale"),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{init.name}_zero")])
        dq_nodes.append(helper.make_node("DequantizeLinear", [f"{init.name}_int8", f"{init.name}_scale",
                                                              f"{init.name}_zero"], [init.name],
                                         name=f"{init.name}_dequant", axis=axis))
        n_q, n_elems = n_q + 1, n_elems + w.size
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dq_nodes + nodes)
    recipe = {"mode": "weight-only", "weights": "s8 symmetric per-channel", "activations": "fp32",
              "quantized_tensors": n_q, "quantized_weights": int(n_elems)}
    set_metadata(model, {**read_metadata(src), "precision": "int8w", "int8w_recipe": recipe})
    save_onnx(model, dst)
    return recipe


# ----------------------------------------------------------------------------- INT8
class ImageCalibrationReader(CalibrationDataReader):
    """``CalibrationDataReader`` over UNLABELED normalised images (N x 3 x H x W float32), in batches.

    Built from arrays, never from a loader with labels: calibration cannot see a target label. Batches are all
    the same size (the largest divisor of N up to ``batch_size``): ORT's histogram calibrators (entropy,
    percentile) fail on a shorter last batch.
    """

    def __init__(self, images: np.ndarray, batch_size: int = 16):
        if images.ndim != 4 or images.shape[1] != 3:
            fail(f"calibration images must be N x 3 x H x W, got shape {tuple(images.shape)}")
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.batch_size = max(b for b in range(1, max(1, min(batch_size, len(images))) + 1) if len(images) % b == 0)
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


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _is_depthwise(node) -> bool:
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


SHAPE_OPS = ("Unsqueeze", "Squeeze", "Transpose", "Reshape", "Flatten", "Expand")


def _gate_muls(graph, hardswish: bool) -> list:
    """Mul nodes fed by a (Hard)Sigmoid (through shape-only ops). ``hardswish``: x * hsig(x), the decomposed
    HardSwish; otherwise the attention gates (SE/ECA: features * sigmoid(branch))."""
    prod = _producers(graph)
    out = []
    for n in graph.node:
        if n.op_type != "Mul":
            continue
        for i, name in enumerate(n.input):
            g = prod.get(name)
            while g is not None and g.op_type in SHAPE_OPS:
                g = prod.get(g.input[0])
            if g is not None and g.op_type in ("Sigmoid", "HardSigmoid"):
                if (g.input[0] == n.input[1 - i]) == hardswish:
                    out += [n.name, g.name]
                break
    return out


# Groups of nodes users may keep in float (--int8-exclude): named by what they are in MobileNetV3, resolved on
# the pre-processed graph, so they work for any exported student (pruned, ECA, low-rank).
EXCLUDE_GROUPS = {
    "stem": lambda g: [next(n.name for n in g.node if n.op_type == "Conv")],
    "depthwise": lambda g: [n.name for n in g.node if _is_depthwise(n)],
    "head": lambda g: [n.name for n in g.node if n.op_type in ("Gemm", "MatMul")],
    "gates": lambda g: _gate_muls(g, hardswish=False),
    "hardswish": lambda g: _gate_muls(g, hardswish=True),
}


def name_unnamed_nodes(path: str | os.PathLike) -> None:
    """Give every nameless node a unique name (``quant_pre_process`` leaves the HardSwish it decomposes
    unnamed, and ``nodes_to_exclude`` can only address named nodes)."""
    import onnx

    model = onnx.load(str(path))
    taken = {n.name for n in model.graph.node}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = next(c for c in (f"{n.op_type}_{i}", f"{n.op_type}_{i}_{len(taken)}") if c not in taken)
            taken.add(n.name)
    onnx.save(model, str(path))


def excluded_nodes(path: str | os.PathLike, groups: Sequence[str]) -> list[str]:
    """Node names of the named ``EXCLUDE_GROUPS`` in the ONNX file at ``path``."""
    import onnx

    unknown = [g for g in groups if g not in EXCLUDE_GROUPS]
    if unknown:
        fail(f"unknown --int8-exclude group '{unknown[0]}'; choose from {', '.join(EXCLUDE_GROUPS)}")
    graph = onnx.load(str(path)).graph
    return sorted({name for g in groups for name in EXCLUDE_GROUPS[g](graph)})


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calib_images: np.ndarray, method: str = "percentile",
                  fmt: str = "qdq", per_channel: bool = True, reduce_range: bool = True, weight_type: str = "s8",
                  exclude: Sequence[str] = (), batch_size: int = 16) -> dict:
    """Static INT8 (U8 activations) after ``quant_pre_process`` (shape inference + ORT graph optimisation).

    ``exclude``: names of ``EXCLUDE_GROUPS`` kept in float. Returns the recipe as a dict (stored in the file's
    metadata too).
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
        name_unnamed_nodes(pre)
        out = os.path.join(tmp, "int8.onnx")
        excl = excluded_nodes(pre, exclude)

        def run(calibrate_method) -> None:
            quantize_static(pre, out, ImageCalibrationReader(calib_images, batch_size),
                            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                            per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8 if weight_type == "s8" else QuantType.QUInt8,
                            calibrate_method=calibrate_method, nodes_to_exclude=excl,
                            calibration_providers=["CPUExecutionProvider"])

        fallback = None
        try:
            run(cm)
        except ValueError as e:
            # histogram calibrators (percentile, entropy) cannot bin a tensor with no spread (a constant or dead
            # activation); min/max calibrates it exactly, so the whole model falls back to min/max and says so
            if method.lower() == "minmax":
                raise
            fallback = f"{method.lower()} failed ({str(e).splitlines()[0][:80]}): min/max used"
            print(f"note: INT8 calibration: {fallback}", file=sys.stderr)
            run(calibration_method("minmax"))
        import onnx

        model = onnx.load(out)
    recipe = {"format": fmt, "activations": "u8", "weights": weight_type, "per_channel": per_channel,
              "reduce_range": reduce_range, "calib_method": method.lower(), "calib_images": int(len(calib_images)),
              "calib_data": "unlabeled target-train images", "exclude": list(exclude),
              "excluded_nodes": len(excl), **({"calib_fallback": fallback} if fallback else {})}
    set_metadata(model, {**meta, "precision": "int8", "int8_recipe": recipe})
    save_onnx(model, dst)
    return recipe
