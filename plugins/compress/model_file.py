"""The compressed-model file (``liteda.compressed/1``) and its TorchScript copy.

A weights_only-loadable record: the base classifier's description, the ordered list of structural ops (one per
applied technique), every module's primitive attributes (channel counts, kernel sizes...) and the float shape of
every tensor, plus the state_dict. :func:`rebuild` replays the ops through the technique registry on an empty
classifier, gives it the recorded shapes and loads the weights; no pickled code. :func:`save_torchscript`
writes a traced copy for runtimes without LiteDA.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Optional

import torch
from torch import nn

from ..utils import atomic_torch_save, atomic_write_bytes, fail

FORMAT = "liteda.compressed/1"
_PRIMITIVE = (int, float, bool, str, type(None))
BASE_KEYS = ("arch", "num_classes", "bottleneck_dim", "classes", "crop_size", "mean", "std")
OPTIONAL_BASE_KEYS = ("resize_size", "prelogits")  # present when the classifier's file has them


# ----------------------------------------------------------------------------- structure record
def _is_primitive(v) -> bool:
    return isinstance(v, _PRIMITIVE) or (isinstance(v, (tuple, list)) and all(isinstance(i, _PRIMITIVE) for i in v))


def module_attributes(model: nn.Module) -> dict[str, dict]:
    """Public primitive attributes of every module (in_channels, groups, out_features, ...)."""
    out = {}
    for name, m in model.named_modules():
        attrs = {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training" and _is_primitive(v)}
        if attrs:
            out[name] = attrs
    return out


def tensor_shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def compressed_record(model: nn.Module, base: dict, ops: list[dict], float_model: Optional[nn.Module] = None) -> dict:
    """``float_model``: the structure before quantization (shapes/attributes are taken from it)."""
    ref = float_model if float_model is not None else model
    base = {k: base[k] for k in BASE_KEYS + tuple(k for k in OPTIONAL_BASE_KEYS if base.get(k) is not None)}
    return {"format": FORMAT, "base": base, "ops": ops, "attributes": module_attributes(ref),
            "shapes": tensor_shapes(ref), "state_dict": model.state_dict()}


def resize_to(model: nn.Module, attributes: dict[str, dict], shapes: dict[str, list[int]]) -> None:
    """Give a template model the recorded attributes and tensor shapes (values are loaded afterwards)."""
    modules = dict(model.named_modules())
    for name, attrs in attributes.items():
        if name in modules:
            for k, v in attrs.items():
                setattr(modules[name], k, tuple(v) if isinstance(v, list) else v)
    for key, shape in shapes.items():
        mod_name, _, attr = key.rpartition(".")
        mod = modules.get(mod_name)
        old = getattr(mod, attr, None) if mod is not None else None
        if not isinstance(old, torch.Tensor) or list(old.shape) == shape:
            continue
        new = torch.zeros(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(mod, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            mod._buffers[attr] = new


def rebuild(rec: dict) -> nn.Module:
    """The module a record describes, weights loaded: each op through its technique's ``rebuild``, in the
    recorded order; the recorded shapes go in once the float structure is complete (before the first technique
    that needs them, e.g. quantization, which traces the float model)."""
    from ..classifier import empty_classifier
    from .registry import TECHNIQUES

    base = rec["base"]
    model = empty_classifier(base)
    shaped = False
    for op in rec["ops"]:
        technique = TECHNIQUES.get(op["op"])
        if technique.after_shapes and not shaped:
            resize_to(model, rec["attributes"], rec["shapes"])
            shaped = True
        model = technique.rebuild(model, op, base)
    if not shaped:
        resize_to(model, rec["attributes"], rec["shapes"])
    model.load_state_dict(rec["state_dict"])
    return model.eval()


# ----------------------------------------------------------------------------- files
def save_compressed(model: nn.Module, base: dict, ops: list[dict], path: str | os.PathLike,
                    float_model: Optional[nn.Module] = None) -> None:
    atomic_torch_save(compressed_record(model, base, ops, float_model), path)


def read_compressed(path: str | os.PathLike) -> dict:
    """The record of a ``compressed.pt`` (``torch.load(weights_only=True)``), one-line error for another file."""
    from ..classifier import read_record

    rec = read_record(path)
    if rec.get("format") != FORMAT:
        fail(f"'{path}' is not a LiteDA compressed model (format {FORMAT})")
    return rec


def load_compressed(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild a saved compressed classifier; returns (model, record)."""
    rec = read_compressed(path)
    return compressed_from_record(rec, path), rec


def compressed_from_record(rec: dict, path: str | os.PathLike) -> nn.Module:
    if rec.get("format") != FORMAT:
        fail(f"'{path}' is not a LiteDA compressed model (format {FORMAT})")
    try:
        return rebuild(rec)
    except RuntimeError as e:
        fail(f"compressed model '{path}' does not fit its recorded structure: {str(e).splitlines()[0][:120]}")
    raise AssertionError


def is_quantized(rec: dict) -> bool:
    """Whether a compressed record's weights are quantized (no further float technique can follow)."""
    return any(op["op"] == "quantize" for op in rec["ops"])


def save_torchscript(model: nn.Module, input_size: int, path: str | os.PathLike) -> bool:
    """A traced TorchScript copy (float or quantized) that loads with ``torch.jit.load``, no LiteDA needed.

    torch.export cannot serialise FX-quantized packed weights on torch 2.14, TorchScript can. Returns False
    when tracing fails (the weights_only record is the primary format)."""
    model.eval()
    try:
        with warnings.catch_warnings(action="ignore"), torch.no_grad():
            traced = torch.jit.trace(model, torch.zeros(1, 3, input_size, input_size))
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
    except Exception:  # noqa: BLE001
        return False
    atomic_write_bytes(path, buf.getvalue())
    return True
