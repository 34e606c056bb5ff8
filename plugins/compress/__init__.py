"""Compression of a trained LiteDA classifier: activation/attention swap -> pruning -> low-rank -> quantization.

A compressed model is saved as a weights_only-loadable record (``liteda.compressed/1``): the base classifier's
description, the ordered list of structural ops (attention kind, low-rank plan, quantization kind), every
module's primitive attributes (channel counts, kernel sizes...) and the float shape of every tensor, plus the
state_dict. :func:`load_compressed` rebuilds the structure from these and loads the weights; no pickled code.
A TorchScript file is written beside it for runtimes without LiteDA (:func:`save_torchscript`).
"""
from __future__ import annotations

import io
import os
import statistics
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..metrics import time_calls
from ..utils import atomic_torch_save, atomic_write_bytes, fail

FORMAT = "liteda.compressed/1"
TECHNIQUES = ("resolution", "activation", "attention", "prune", "lowrank", "quantize")
_PRIMITIVE = (int, float, bool, str, type(None))


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
    base = {k: base[k] for k in ("arch", "num_classes", "bottleneck_dim", "classes", "crop_size", "mean", "std")
            + (("resize_size",) if base.get("resize_size") else ())}
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


def rebuild(rec: dict, quantize: bool = True) -> nn.Module:
    """The float (or quantized) module of a record, weights loaded when the structure is float."""
    from ..classifier import build_classifier
    from .activation import swap_activation
    from .attention import swap_attention
    from .lowrank import apply_lowrank_plan

    base = rec["base"]
    model = build_classifier(base["arch"], base["num_classes"], pretrained=False, bottleneck_dim=base["bottleneck_dim"])
    quant = None
    for op in rec["ops"]:
        if op["op"] == "activation":
            swap_activation(model, op["kind"])
        elif op["op"] == "attention":
            swap_attention(model, op["kind"])
        elif op["op"] == "lowrank":
            apply_lowrank_plan(model, op["plan"])
        elif op["op"] == "quantize":
            quant = op["kind"]
    resize_to(model, rec["attributes"], rec["shapes"])
    if quant is None or not quantize:
        if quant is None:
            model.load_state_dict(rec["state_dict"])
        return model.eval()
    from .quantize import convert_static, prepare_static, quantize_dynamic_linear, widen_tiny_weight_scales

    if quant == "ptdq":
        model = quantize_dynamic_linear(model)
    else:
        model = convert_static(prepare_static(model, base["crop_size"], qat=quant == "qat"))
    model.load_state_dict(rec["state_dict"])
    if quant != "ptdq":  # files saved before the widening existed get it on load (idempotent)
        widen_tiny_weight_scales(model, base["crop_size"])
    return model.eval()


def source_run(info: dict) -> Optional[Path]:
    """The training run folder (with splits/) a compression started from, read off its results.json: ``run``,
    or for results written before it was recorded, the folder of the ``ckpt`` it compressed."""
    run = info.get("run") or (str(Path(info["ckpt"]).parent) if info.get("ckpt") else None)
    return Path(run) if run else None


def save_compressed(model: nn.Module, base: dict, ops: list[dict], path: str | os.PathLike,
                    float_model: Optional[nn.Module] = None) -> None:
    atomic_torch_save(compressed_record(model, base, ops, float_model), path)


def load_compressed(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild a saved compressed classifier (``torch.load(weights_only=True)``)."""
    from ..classifier import read_record

    rec = read_record(path)
    return compressed_from_record(rec, path), rec


def compressed_from_record(rec: dict, path: str | os.PathLike) -> nn.Module:
    if rec.get("format") != FORMAT:
        fail(f"'{path}' is not a LiteDA compressed model (format {FORMAT})")
    try:
        return rebuild(rec)
    except RuntimeError as e:
        fail(f"compressed model '{path}' does not fit its recorded structure: {str(e).splitlines()[0][:120]}")
    raise AssertionError


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


# ----------------------------------------------------------------------------- measurements
def state_dict_mb(model: nn.Module) -> float:
    """Serialised state_dict size in MB (10^6 bytes), what a compressed.pt of this model weighs."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue()) / 1e6


@torch.inference_mode()
def measure_latency(model: nn.Module, input_size: int, runs: int = 50, warmup: int = 10, threads: int = 1) -> dict:
    """Batch-1 CPU latency in ms: median and p90 of ``runs`` timed forwards after ``warmup`` untimed ones.

    One intra-op thread by default: on a shared 2-core machine two threads measured ~10x slower and far
    noisier (OpenMP threads wait for each other while other jobs hold the cores)."""
    model.eval()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 3, input_size, input_size)
        times = time_calls(lambda: model(x), runs, warmup)
    finally:
        torch.set_num_threads(prev)
    times.sort()
    return {"latency_ms_p50": statistics.median(times), "latency_ms_p90": times[int(0.9 * (len(times) - 1))],
            "latency_runs": runs, "latency_threads": threads}


def count_params_any(model: nn.Module) -> int:
    """Parameters of float and quantized models alike (quantized weights live in packed params)."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        w = getattr(m, "weight", None)
        if callable(w) and not isinstance(w, nn.Module):
            try:
                t = w()
            except Exception:  # noqa: BLE001
                continue
            if isinstance(t, torch.Tensor):
                n += t.numel()
                b = m.bias() if callable(getattr(m, "bias", None)) else None
                n += b.numel() if isinstance(b, torch.Tensor) else 0
    return int(n)


__all__ = ["FORMAT", "TECHNIQUES", "compressed_record", "count_params_any", "load_compressed", "measure_latency",
           "rebuild", "resize_to", "save_compressed", "save_torchscript", "state_dict_mb"]
