"""Gradient reversal (Ganin & Lempitsky, 2015): identity forward, ``-coeff * grad`` backward.

``WarmStartGradientReverseLayer`` ramps the coefficient from ``lo`` to ``hi`` with tllib's schedule
``2 (hi - lo) / (1 + exp(-alpha * i / max_iters)) - (hi - lo) + lo`` so that the noisy early discriminator does
not wreck the freshly initialised features. The iteration counter is a buffer: it is saved in the method's
``state_dict`` and ``--resume`` continues the ramp where it stopped.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd import Function


class GradientReverseFunction(Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.coeff, None


class GradientReverseLayer(nn.Module):
    """Constant-coefficient reversal."""

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return GradientReverseFunction.apply(x, self.coeff)


def warm_start_coeff(i: int, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: int = 1000) -> float:
    """tllib's ramp: ``lo`` at i=0, tending to ``hi`` as i grows (reaching ~0.46*(hi-lo)+lo at max_iters)."""
    return float(2.0 * (hi - lo) / (1.0 + math.exp(-alpha * i / max_iters)) - (hi - lo) + lo)


class WarmStartGradientReverseLayer(nn.Module):
    """Reversal whose coefficient follows :func:`warm_start_coeff`; ``auto_step`` advances it once a forward."""

    def __init__(self, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: int = 1000,
                 auto_step: bool = False):
        super().__init__()
        self.alpha, self.lo, self.hi, self.max_iters, self.auto_step = alpha, lo, hi, max_iters, auto_step
        self.register_buffer("iter_num", torch.zeros((), dtype=torch.long))

    @property
    def coeff(self) -> float:
        return warm_start_coeff(int(self.iter_num), self.alpha, self.lo, self.hi, self.max_iters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = GradientReverseFunction.apply(x, self.coeff)
        if self.auto_step and self.training:
            self.step()
        return y

    def step(self) -> None:
        self.iter_num += 1
