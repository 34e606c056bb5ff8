"""JAN (Long et al., 2017): joint MMD over (bottleneck features, softmax predictions).

Kernels (tllib): the feature layer uses the Gaussian family ``alpha = 2^k, k = -3..1``; the prediction layer one
fixed Gaussian with ``sigma = 0.92``. The adversarial variant JAN-A is not included.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_with_grad
from ..interop import tllib_losses
from .base import Method, Step
from .dann import require_positive
from .kernels import GaussianKernel, JointMultipleKernelMaximumMeanDiscrepancy, gaussian_kernel_family


class JAN(Method):
    name = "jan"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "softmax_sigma")
        self.linear, self.sigma = args.linear, args.softmax_sigma
        if tllib_losses.wanted(args):
            self.losses = "tllib"
            self.jmmd = tllib_losses.joint_multiple_kernel_mmd(args.linear, args.softmax_sigma)
        else:
            self.jmmd = JointMultipleKernelMaximumMeanDiscrepancy(
                (gaussian_kernel_family(-3, 1), [GaussianKernel(sigma=args.softmax_sigma, track_running_stats=False)]),
                linear=args.linear)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--linear", action="store_true", help="linear-time JMMD estimate")
        parser.add_argument("--softmax-sigma", type=float, default=0.92, help="bandwidth of the prediction kernel")
        tllib_losses.add_args(parser)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        # JMMD is a statistic of the whole batch: under torchrun, of the global one (docs/distributed.md)
        f_s, f_t, y_s, y_t = (gather_with_grad(x) for x in (step.f_s, step.f_t, step.logits_s, step.logits_t))
        loss = self.jmmd((f_s, F.softmax(y_s, dim=1)), (f_t, F.softmax(y_t, dim=1)))
        return loss, {}

    def config(self) -> dict:
        return {"linear": self.linear, "softmax_sigma": self.sigma, "kernel_alphas": [2.0 ** k for k in range(-3, 2)],
                **self.losses_config()}
