"""DAN (Long et al., 2015): multi-kernel MMD between source and target bottleneck features.

Kernels: Gaussian with ``sigma^2 = alpha * mean pairwise squared distance``, ``alpha = 2^k, k = -3..1`` (tllib);
the kernel weights are uniform (tllib's choice; the paper's beta optimisation is left out).
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from ..distributed import gather_with_grad
from ..interop import tllib_losses
from .base import Method, Step
from .kernels import MultipleKernelMaximumMeanDiscrepancy, gaussian_kernel_family


class DAN(Method):
    name = "dan"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        self.linear = args.linear
        if tllib_losses.wanted(args):
            self.losses, self.mkmmd = "tllib", tllib_losses.multiple_kernel_mmd(args.linear)
        else:
            self.mkmmd = MultipleKernelMaximumMeanDiscrepancy(gaussian_kernel_family(-3, 1), linear=args.linear)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--linear", action="store_true", help="linear-time MMD estimate (paper's)")
        tllib_losses.add_args(parser)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        # MMD is a statistic of the whole batch: under torchrun, of the global one (docs/distributed.md)
        return self.mkmmd(gather_with_grad(step.f_s), gather_with_grad(step.f_t)), {}

    def config(self) -> dict:
        return {"linear": self.linear, "kernel_alphas": [2.0 ** k for k in range(-3, 2)], **self.losses_config()}
