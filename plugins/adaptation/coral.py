"""Deep CORAL (Sun & Saenko, 2016): align second-order statistics of source and target features.

Normalisation: the paper's ``||C_s - C_t||_F^2 / (4 d^2)`` with unbiased covariances (``1/(n-1)``).
(tllib's ``CorrelationAlignmentLoss`` instead returns ``mean((mu_s-mu_t)^2) + mean((C_s-C_t)^2)``, i.e. the
covariance term divided by ``d^2`` plus a mean term; ``--coral-mean`` adds the mean term ``||mu_s-mu_t||^2/d``.)
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from ..distributed import gather_with_grad
from .base import Method, Step
from .kernels import fp32


def covariance(f: torch.Tensor) -> torch.Tensor:
    """Unbiased feature covariance ``(D - mean)^T (D - mean) / (n - 1)``."""
    centred = f - f.mean(0, keepdim=True)
    return centred.t() @ centred / (len(f) - 1)


class CorrelationAlignmentLoss(nn.Module):
    """``forward(f_s, f_t) = ||C_s - C_t||_F^2 / (4 d^2)`` (+ ``||mu_s - mu_t||^2 / d`` with ``with_mean``)."""

    def __init__(self, with_mean: bool = False):
        super().__init__()
        self.with_mean = with_mean

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        if len(f_s) < 2 or len(f_t) < 2:
            raise ValueError("CORAL needs at least 2 samples per domain")
        d = f_s.shape[1]
        with fp32(f_s.device):
            f_s, f_t = f_s.float(), f_t.float()
            loss = (covariance(f_s) - covariance(f_t)).pow(2).sum() / (4 * d * d)
            if self.with_mean:
                loss = loss + (f_s.mean(0) - f_t.mean(0)).pow(2).sum() / d
        return loss


class CORAL(Method):
    name = "coral"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        self.coral = CorrelationAlignmentLoss(with_mean=args.coral_mean)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--coral-mean", action="store_true", help="also align feature means (tllib adds it)")

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        # covariances are statistics of the whole batch: under torchrun, of the global one
        return self.coral(gather_with_grad(step.f_s), gather_with_grad(step.f_t)), {}

    def config(self) -> dict:
        return {"normalisation": "||C_s-C_t||_F^2/(4d^2)", "with_mean": self.coral.with_mean}
