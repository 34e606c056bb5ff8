"""Statistics of chosen layers' inputs over unlabeled batches (the data-aware techniques' shared measurement:
the whitened SVD's second moments, the binary layers' activation thresholds)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


@torch.no_grad()
def mean_input_statistic(model: nn.Module, names: list[str], batches: Iterable[torch.Tensor],
                         statistic: Callable[[torch.Tensor], tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """For each named sub-module, the sum of ``statistic(input)`` over ``batches`` divided by the summed sample
    counts it returns. Inputs are read in float64 by forward pre-hooks in eval mode; the model's mode is restored."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def fn(module, inputs):
            value, n = statistic(inputs[0].detach().double())
            sums[name] = sums.get(name, 0) + value
            counts[name] = counts.get(name, 0) + n
        return fn

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    was = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: sums[n] / counts[n] for n in sums}
