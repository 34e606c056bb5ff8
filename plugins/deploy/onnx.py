"""Export a LiteDA classifier to ONNX: one NCHW float input named ``input``, the model's normalisation,
classes and crop size written into the file's metadata, checked by ``onnx.checker`` and against PyTorch.

Exporter: torch's legacy TorchScript exporter (``dynamo=False``). On MobileNetV3-Small it exports at exactly
opset 17 with ``GlobalAveragePool`` for the SE blocks; the dynamo exporter is much slower, emits opset 18 (its
down-conversion to 17 fails on ``ReduceMean`` axes) and ``ReduceMean`` instead. Both agree with PyTorch to float
rounding; the legacy graph is the one every runtime here (ORT quantization, OpenVINO, TensorRT) takes as is.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..utils import atomic_write_bytes, fail

INPUT_NAME, OUTPUT_NAME = "input", "logits"
META_PREFIX = "liteda."


def fold_bottleneck_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose ``Linear -> BatchNorm1d`` bottleneck is one Linear (one Gemm in ONNX: fewer
    nodes to run and to quantize; the maths is unchanged)."""
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    model = copy.deepcopy(model).eval().float()
    bn = getattr(model, "bottleneck", None)
    if not (isinstance(bn, nn.Sequential) and len(bn) >= 2 and isinstance(bn[1], nn.BatchNorm1d)):
        return model
    if isinstance(bn[0], nn.Linear):
        bn[0] = fuse_linear_bn_eval(bn[0], bn[1])
    elif isinstance(bn[0], nn.Sequential) and len(bn[0]) and isinstance(bn[0][-1], nn.Linear):  # low-rank pair
        bn[0][-1] = fuse_linear_bn_eval(bn[0][-1], bn[1])
    else:
        return model
    bn[1] = nn.Identity()  # a stray BatchNormalization would also be mis-quantized by ORT (1-D weight)
    return model


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def set_metadata(model_proto, meta: dict[str, Any]) -> None:
    """Write ``liteda.*`` metadata_props (values JSON-encoded), replacing earlier ones of the same key."""
    keep = [p for p in model_proto.metadata_props if not p.key.startswith(META_PREFIX) or
            p.key[len(META_PREFIX):] not in meta]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(keep)
    for k, v in meta.items():
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = META_PREFIX + k, json.dumps(v)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``liteda.*`` metadata of an ONNX file (what a deployment needs: classes, mean, std, crop size)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: json.loads(p.value) for p in proto.metadata_props if p.key.startswith(META_PREFIX)}


def save_onnx(model_proto, path: str | os.PathLike) -> None:
    """Serialise and write atomically (a crash never leaves a half-written .onnx behind)."""
    atomic_write_bytes(path, model_proto.SerializeToString())


def onnx_logits(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


@torch.no_grad()
def compare_with_torch(model: nn.Module, path: str | os.PathLike, images: torch.Tensor, batch: int = 32) -> dict:
    """Largest |logit difference| and top-1 agreement (%) between the ONNX file (ORT, CPU) and the PyTorch model
    on ``images``. FP32 files agree to float rounding; a QDQ export of a PyTorch-quantized model differs by rounding
    (fbgemm and ORT requantize differently), so its agreement is the number to read."""
    model = model.eval()
    worst, same = 0.0, 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch].float()
        ref = model(x).float().numpy()
        out = onnx_logits(path, x.numpy())
        worst = max(worst, float(np.abs(out - ref).max()))
        same += int((out.argmax(1) == ref.argmax(1)).sum())
    return {"max_abs_diff_vs_torch": worst, "top1_agree_vs_torch": 100.0 * same / max(1, len(images))}


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: int, opset: int = 17,
                dynamic_batch: bool = True, meta: Optional[dict[str, Any]] = None,
                check_images: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """Export ``model`` (a LiteDA ``ImageClassifier``) to ``path``; returns what was checked.

    A PyTorch-quantized model (FX PTSQ/QAT) exports as INT8 QDQ (QuantizeLinear/DequantizeLinear around float
    ops, the form ONNX Runtime fuses into QLinearConv and TensorRT builds INT8 from): its scales are the ones
    QAT learned. ``check_images``: normalised N x 3 x H x W images (real ones when available) for the PyTorch
    comparison; random inputs are used without them (and the report says so).
    """
    import onnx

    from ..compress.quantize import is_torch_quantized

    if input_size < 8:
        fail(f"input size must be at least 8 px, got {input_size}")
    quantized = is_torch_quantized(model)
    net = model.eval() if quantized else fold_bottleneck_bn(model)
    dummy = torch.zeros(1, 3, input_size, input_size)
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    set_metadata(proto, {"format": "liteda.onnx/1", "crop_size": input_size, "precision": "int8" if quantized else "fp32",
                         **({"int8_recipe": "PyTorch FX quantized model exported as QDQ"} if quantized else {}),
                         **(meta or {})})
    onnx.checker.check_model(proto, full_check=True)
    save_onnx(proto, path)
    compacted = compact_onnx(path) if quantized else None  # the float export is already initializers
    source = "real images"
    if check_images is None:
        check_images, source = torch.randn(4, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)), "random inputs"
    check = compare_with_torch(net, path, check_images, batch=32 if dynamic_batch else 1)  # a static file takes bs 1
    return {"path": str(path), "opset": opset, "exporter": "torch.onnx.export(dynamo=False)",
            "dynamic_batch": dynamic_batch, "input": [INPUT_NAME, "float32", ["batch" if dynamic_batch else 1, 3, input_size, input_size]],
            **check, "checked_on": f"{len(check_images)} {source}",
            "size_mb": os.path.getsize(path) / 1e6, "sha256": file_sha256(path),
            **({"size_mb_before_compaction": compacted["mb_before"]} if compacted else {})}


def compact_onnx(path: str | os.PathLike) -> dict[str, float]:
    """Rewrite ``path`` smaller without changing what it computes; returns its MB before and after.

    Why: a QDQ export of a PyTorch-quantized model writes every weight as a ``Constant`` node, every activation
    quantizer as QuantizeLinear -> Cast -> DequantizeLinear and every zero point as ``ConstantOfShape``, each with
    a long generated name: a sizeable share of a small INT8 file is graph, not weights.
    ONNX Runtime's *basic* offline optimisation (standard ONNX ops only, so TensorRT and other runtimes still take
    the file; the Q/DQ pairs and INT8 weights are kept) folds those chains into initializers; then the opset
    imports it adds but no node uses are dropped and internal tensor names shortened. Node names are kept (ORT
    profiles and INT8 exclusion lists use them). A result with a non-standard op, or not smaller, is discarded.
    """
    import onnx
    import onnxruntime as ort

    path = str(path)
    before = os.path.getsize(path) / 1e6
    tmp = path + ".basic.tmp"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = tmp
    try:
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        proto = onnx.load(tmp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if any(n.domain not in ("", "ai.onnx") for n in proto.graph.node):
        return _mark_uncompacted(path, before)
    used = [o for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    del proto.opset_import[:]
    proto.opset_import.extend(used)
    _shorten_tensor_names(proto.graph)
    set_metadata(proto, {"compacted_from_mb": round(before, 6)})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    if len(data) / 1e6 >= before:  # e.g. a fold that turned INT8 weights back into float: keep the original
        return _mark_uncompacted(path, before)
    atomic_write_bytes(path, data)
    return {"mb_before": before, "mb_after": len(data) / 1e6}


def _mark_uncompacted(path: str, before: float) -> dict[str, float]:
    """Keep the file's graph but record that compaction was tried (so the exporter does not redo it each run)."""
    import onnx

    proto = onnx.load(path)
    set_metadata(proto, {"compacted_from_mb": round(before, 6)})
    save_onnx(proto, path)
    return {"mb_before": before, "mb_after": os.path.getsize(path) / 1e6}


def _shorten_tensor_names(graph) -> None:
    """Internal tensors get hexadecimal names; the graph's inputs and outputs keep theirs (the file's API)."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for t in graph.initializer:
        t.name = short(t.name)
    for n in graph.node:
        n.input[:] = [short(x) for x in n.input]
        n.output[:] = [short(x) for x in n.output]
    for v in graph.value_info:
        v.name = short(v.name)


def model_meta(rec, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """ONNX metadata from a run's stage record (:class:`liteda.record.StageRecord`): what a user of the .onnx
    needs to preprocess and decode."""
    tf = rec.transform
    return {"arch": rec.arch, "classes": list(rec.dataset.classes), "mean": list(tf.mean), "std": list(tf.std),
            "crop_size": int(tf.crop), "resize_size": int(tf.resize),
            "layout": "NCHW float32, RGB in [0,1] then (x-mean)/std", **(extra or {})}


def stamp(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Add ``liteda.*`` metadata to the ONNX file at ``path`` (rewritten atomically)."""
    import onnx

    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    save_onnx(proto, path)
