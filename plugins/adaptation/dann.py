"""DANN (Ganin et al., 2016): a domain discriminator on bottleneck features, trained through gradient reversal.

tllib shapes: ``DomainDiscriminator(in_feature, hidden_size)``, ``DomainAdversarialLoss(discriminator)`` with
``forward(f_s, f_t, w_s=None, w_t=None)``. Domain label 1 = source, 0 = target.
"""
from __future__ import annotations

import argparse
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..interop import tllib_losses
from ..utils import fail
from .base import Method, Step
from .grl import WarmStartGradientReverseLayer


class DomainDiscriminator(nn.Sequential):
    """tllib's 3-layer MLP: ``in -> hidden -> hidden -> 1``; BatchNorm (default) or Dropout(0.5) between.

    ``sigmoid=True`` (tllib's default) outputs probabilities; the losses here accept either and use the
    numerically safe logit form internally (it is also autocast-safe, unlike ``F.binary_cross_entropy``).
    """

    def __init__(self, in_feature: int, hidden_size: int, batch_norm: bool = True, sigmoid: bool = True):
        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()] if batch_norm else \
                   [nn.Linear(i, o), nn.ReLU(), nn.Dropout(0.5)]

        layers = block(in_feature, hidden_size) + block(hidden_size, hidden_size) + [nn.Linear(hidden_size, 1)]
        super().__init__(*(layers + [nn.Sigmoid()] if sigmoid else layers))
        self.sigmoid = sigmoid

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output whatever ``sigmoid`` says."""
        for layer in list(self)[:-1] if self.sigmoid else self:
            x = layer(x)
        return x.squeeze(1)

    def get_parameters(self, base_lr: float = 1.0) -> list[dict]:
        return [{"params": self.parameters(), "lr": base_lr}]


def binary_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Percent of ``logits > 0`` matching 0/1 ``target``."""
    return float(((logits > 0).float() == target).float().mean() * 100)


def domain_bce(logits: torch.Tensor, label: float, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean binary cross-entropy against a constant domain label, optionally weighted per sample."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label), weight=weight)


class DomainAdversarialLoss(nn.Module):
    """``0.5 * (BCE(D(grl(f_s)), 1) + BCE(D(grl(f_t)), 0))``; ``w_s``/``w_t`` weight samples (IWAN).

    After a call, ``domain_discriminator_accuracy`` holds the discriminator's accuracy on that batch (percent).
    """

    def __init__(self, domain_discriminator: DomainDiscriminator, grl: Optional[nn.Module] = None):
        super().__init__()
        self.domain_discriminator = domain_discriminator
        self.grl = grl if grl is not None else WarmStartGradientReverseLayer(
            alpha=1.0, lo=0.0, hi=1.0, max_iters=1000, auto_step=True)
        self.domain_discriminator_accuracy: float = float("nan")

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, w_s: Optional[torch.Tensor] = None,
                w_t: Optional[torch.Tensor] = None) -> torch.Tensor:
        d = self.domain_discriminator.logits(self.grl(torch.cat([f_s, f_t])))
        d_s, d_t = d[:len(f_s)], d[len(f_s):]
        self.domain_discriminator_accuracy = 0.5 * (binary_accuracy(d_s, torch.ones_like(d_s)) +
                                                    binary_accuracy(d_t, torch.zeros_like(d_t)))
        return 0.5 * (domain_bce(d_s, 1.0, w_s) + domain_bce(d_t, 0.0, w_t))


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """One-line error naming the flag when a size/scale knob is not positive."""
    for name in names:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")


def add_adversarial_args(parser: argparse.ArgumentParser, hidden_size: int = 1024) -> None:
    """Flags every discriminator-based method shares (tllib's values)."""
    parser.add_argument("--hidden-size", type=int, default=hidden_size, help="domain discriminator width")
    add_grl_args(parser)


def add_grl_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grl-max-iters", type=int, default=0,
                        help="reversal warm start: coefficient 2/(1+exp(-i/N))-1 ramps from 0 towards 1; "
                             "0 (default) = N is a tenth of the run, the DANN paper's 2/(1+exp(-10p))-1 over "
                             "progress p (tllib fixes N=1000, which a short CPU run never gets through)")


def grl_horizon(args: argparse.Namespace, total_iters: int) -> int:
    """``--grl-max-iters``, or the paper's ramp (a tenth of the run) when it is 0."""
    if args.grl_max_iters < 0:
        fail(f"--grl-max-iters must be >= 0 (got {args.grl_max_iters})")
    return args.grl_max_iters or max(1, round(total_iters / 10))


class DANN(Method):
    name = "dann"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "hidden_size")
        self.hidden_size, self.grl_max_iters = args.hidden_size, grl_horizon(args, total_iters)
        if tllib_losses.wanted(args):
            self.losses = "tllib"
            self.domain_adv = tllib_losses.domain_adversarial(model.features_dim, args.hidden_size, self.grl_max_iters)
        else:
            grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=self.grl_max_iters, auto_step=True)
            self.domain_adv = DomainAdversarialLoss(DomainDiscriminator(model.features_dim, args.hidden_size), grl)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        add_adversarial_args(parser)
        tllib_losses.add_args(parser)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.domain_adv(step.f_s, step.f_t)
        return loss, {"domain_acc": float(self.domain_adv.domain_discriminator_accuracy),
                      "grl_coeff": self.domain_adv.grl.coeff}

    def config(self) -> dict:
        return {"hidden_size": self.hidden_size, "grl_max_iters": self.grl_max_iters, **self.losses_config()}
