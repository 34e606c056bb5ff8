"""What a compression stage reports of a model: size, parameters, MACs, batch-1 CPU latency, target-test accuracy;
for a model with binarised layers also their packed size and binary operations (``binary``)."""
from __future__ import annotations

import io
import statistics
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import classification_metrics, count_flops, file_size_mb, predict, time_calls
from .binary import binary_measures


def state_dict_mb(model: nn.Module) -> float:
    """Serialised state_dict size in MB (10^6 bytes), what a compressed.pt of this model weighs."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue()) / 1e6


@torch.inference_mode()
def measure_latency(model: nn.Module, input_size: int, runs: int = 50, warmup: int = 10, threads: int = 1) -> dict:
    """Batch-1 CPU latency in ms: median and p90 of ``runs`` timed forwards after ``warmup`` untimed ones.

    One intra-op thread by default: on a shared 2-core machine more threads wait for each other while other jobs
    hold the cores, which makes the figure slow and noisy."""
    model.eval()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # its own generator: drawing from the global one would make what follows (the compression's random
        # views) depend on --latency-runs
        x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
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


def evaluate(model: nn.Module, loader: DataLoader, num_classes: int) -> dict:
    """Target-test metrics of one model (reported, never used for a decision)."""
    logits, labels = predict(model, loader)
    m = classification_metrics(logits, labels, num_classes)
    return {k: v for k, v in m.items() if not isinstance(v, list)}  # every scalar metric, as a training run's


def describe(model: nn.Module, loader: DataLoader, num_classes: int, input_size: int, file: Optional[Path],
             runs: int, threads: int = 1, float_model: Optional[nn.Module] = None) -> dict:
    """Target-test accuracy + params, MACs, MB, bs1 latency of one model. FlopCounterMode does not see
    quantized kernels, so a quantized model's MACs (INT8 MACs) are counted on its float structure."""
    structure = float_model if float_model is not None else model
    out = {"target_test": evaluate(model, loader, num_classes), "params": count_params_any(model)}
    out.update(count_flops(structure, input_size))
    out["state_dict_mb"] = state_dict_mb(model)
    out.update(binary_measures(structure, input_size, out["macs"], out["state_dict_mb"]))
    if file is not None:
        out["file_mb"] = file_size_mb(file)
    if runs > 0:  # 0: no latency figure (a study that only needs accuracy, on a busy machine)
        out.update(measure_latency(model, input_size, runs=runs, warmup=max(3, runs // 5), threads=threads))
    return out
