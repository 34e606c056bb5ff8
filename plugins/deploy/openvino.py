"""OpenVINO IR files: the FP32 ONNX converted to ``.xml`` (graph) + ``.bin`` (weights), and INT8 made from it by
NNCF's post-training quantization on unlabeled target-train images.

NNCF's accuracy-control mode needs a metric; target labels are not available, so the metric is label-free: the
top-1 agreement of the quantized model with the FP32 IR's own predictions on the calibration images. NNCF
quantizes, measures the agreement, and returns the layers that cost the most agreement to float until the drop
is within ``1 - min_agreement``.

The deployment metadata of the ONNX file (classes, mean, std, crop size) and LiteDA's stamp travel inside the IR
as ``rt_info`` (``model.get_rt_info(["liteda"])``: a JSON string).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..utils import fail

NOT_INSTALLED = "openvino not installed (pip install liteda[openvino])"
NNCF_NOT_INSTALLED = "nncf not installed (pip install liteda[openvino])"
META_KEY = "liteda"
NNCF_MODES = ("accuracy-control", "ptq")
NNCF_PRESETS = ("performance", "mixed")


def openvino_module():
    """``openvino``, or a one-line error saying how to install it."""
    try:
        import openvino as ov
    except ImportError:
        fail(NOT_INSTALLED)
    return ov


def read_ir_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """LiteDA's metadata in an IR's ``rt_info`` ({} when it has none)."""
    model = openvino_module().Core().read_model(str(path))
    return _metadata(model)


def _metadata(model) -> dict[str, Any]:
    if not model.has_rt_info([META_KEY]):
        return {}
    return json.loads(model.get_rt_info([META_KEY]).astype(str))


def save_ir(model, path: str | os.PathLike, meta: Optional[dict[str, Any]] = None) -> Path:
    """Write ``model`` as ``path`` (.xml) + .bin, FP32 weights kept as they are, ``meta`` merged into its
    rt_info. Written under temporary names and renamed, the .bin first: a crash never leaves an .xml whose
    weights are from another model."""
    ov = openvino_module()
    path = Path(path)
    if path.suffix != ".xml":
        fail(f"an OpenVINO IR is written as .xml + .bin, got '{path}'")
    if meta:
        model.set_rt_info(json.dumps({**_metadata(model), **meta}), [META_KEY])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)  # the default would halve the FP32 weights
    os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(tmp, path)
    return path


def stamp_ir(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    save_ir(openvino_module().Core().read_model(str(path)), path, meta)


def convert_onnx_to_ir(onnx_path: str | os.PathLike, path: str | os.PathLike) -> dict[str, Any]:
    """The FP32 ONNX as an FP32 IR (dynamic batch kept), its deployment metadata carried over."""
    from .onnx import read_metadata

    ov = openvino_module()
    model = ov.convert_model(str(onnx_path))
    save_ir(model, path, {**read_metadata(onnx_path), "precision": "fp32", "converted_from": Path(onnx_path).name})
    return {"converter": f"openvino.convert_model {ov.__version__.split('-')[0]}",
            "input": str(model.inputs[0].partial_shape)}


def ir_logits(model, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """Logits of an ``ov.Model`` or an IR path on the CPU (FP32 precision hint)."""
    ov = openvino_module()
    core = ov.Core()
    compiled = core.compile_model(model if not isinstance(model, (str, os.PathLike)) else str(model), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([compiled(np.ascontiguousarray(images[i:i + batch]))[0]
                           for i in range(0, len(images), batch)])


def count_fake_quantize(model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def quantize_nncf(src: str | os.PathLike, dst: str | os.PathLike, calib_images: np.ndarray,
                  mode: str = "accuracy-control", min_agreement: float = 99.0,
                  preset: str = "performance", max_iters: Optional[int] = None) -> dict[str, Any]:
    """INT8 IR at ``dst`` from the FP32 IR at ``src`` by NNCF, calibrated on ``calib_images`` (unlabeled
    N x 3 x H x W float32). ``mode``: ``ptq`` (plain post-training quantization) or ``accuracy-control``
    (layers returned to float until the top-1 agreement with the FP32 IR on the same images is at least
    ``min_agreement`` %, at most ``max_iters`` of them). Returns the recipe and what it achieved (written into the
    IR's rt_info too)."""
    import logging

    try:
        import nncf
    except ImportError:
        fail(NNCF_NOT_INSTALLED)
    if mode not in NNCF_MODES:
        fail(f"unknown NNCF mode '{mode}' (--nncf-mode); choose from {', '.join(NNCF_MODES)}")
    if preset not in NNCF_PRESETS:
        fail(f"unknown NNCF preset '{preset}' (--nncf-preset); choose from {', '.join(NNCF_PRESETS)}")
    if len(calib_images) == 0:
        fail("no calibration images (--calib-size must be positive and the target-train split non-empty)")
    nncf.set_log_level(logging.WARNING)
    ov = openvino_module()
    model = ov.Core().read_model(str(src))
    meta = _metadata(model)
    images = np.ascontiguousarray(calib_images, dtype=np.float32)
    ref = ir_logits(model, images).argmax(1)
    # one image per item: NNCF's statistics and its per-sample ranking of layers both work image by image
    items = [(images[i:i + 1], int(ref[i])) for i in range(len(images))]
    data = nncf.Dataset(items, lambda item: item[0])
    common = dict(preset=getattr(nncf.QuantizationPreset, preset.upper()), target_device=nncf.TargetDevice.CPU,
                  subset_size=len(items))
    if mode == "ptq":
        q = nncf.quantize(model, data, **common)
    else:
        def agreement(compiled, validation_items) -> tuple[float, list[float]]:
            """Label-free: 1.0 for each image whose top-1 class is the FP32 IR's, else 0.0."""
            hits = [float(int(np.argmax(compiled(x)[0])) == r) for x, r in validation_items]
            return float(np.mean(hits)), hits

        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        restorer = AdvancedAccuracyRestorerParameters(**({"max_num_iterations": max_iters} if max_iters else {}))
        q = nncf.quantize_with_accuracy_control(
            model, data, data, agreement, max_drop=max(0.0, (100.0 - min_agreement) / 100.0),
            drop_type=nncf.DropType.ABSOLUTE, advanced_accuracy_restorer_parameters=restorer, **common)
    agree = float((ir_logits(q, images).argmax(1) == ref).mean() * 100)
    recipe = {"tool": f"nncf {nncf.__version__}", "mode": mode, "preset": preset, "target_device": "CPU",
              "calib_images": int(len(images)), "calib_data": "unlabeled target-train images",
              **({"metric": "top-1 agreement with the FP32 IR on the calibration images",
                  "min_agreement": min_agreement, "max_iters": max_iters} if mode == "accuracy-control" else {}),
              "agreement_on_calibration_images": agree, "fake_quantize_nodes": count_fake_quantize(q)}
    save_ir(q, dst, {**meta, "precision": "int8", "int8_recipe": recipe})
    return recipe
