"""MDD (Zhang et al., 2019): margin disparity discrepancy with an adversarial head.

The method owns an auxiliary head ``h'`` on gradient-reversed bottleneck features. ``h'`` learns to agree with the
main head on source and to disagree on target (maximising the disparity); through the reversal the features learn
to make that impossible (minimising it). The main head's predictions enter only through ``argmax``.
tllib shapes: ``MarginDisparityDiscrepancy(source_disparity, target_disparity, margin)`` and
``ClassificationMarginDisparityDiscrepancy(margin)`` with ``forward(y_s, y_s_adv, y_t, y_t_adv, w_s, w_t)``.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..interop import tllib_losses
from .base import Method, Step
from .dann import add_grl_args, grl_horizon, require_positive
from .grl import WarmStartGradientReverseLayer

Disparity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MarginDisparityDiscrepancy(nn.Module):
    """``-margin * mean(w_s * source_disparity) + mean(w_t * target_disparity)``: the adversarial head's objective.

    With the classification disparities below this is ``-margin * CE(y_s_adv, argmax y_s) + log(1 - p_t_adv)``
    (paper eq. 29): large when the adversarial head agrees with the main head on source and disagrees on target.
    """

    def __init__(self, source_disparity: Disparity, target_disparity: Disparity, margin: float = 4.0):
        super().__init__()
        self.source_disparity, self.target_disparity, self.margin = source_disparity, target_disparity, margin

    def forward(self, y_s: torch.Tensor, y_s_adv: torch.Tensor, y_t: torch.Tensor, y_t_adv: torch.Tensor,
                w_s: Optional[torch.Tensor] = None, w_t: Optional[torch.Tensor] = None) -> torch.Tensor:
        src = self.source_disparity(y_s, y_s_adv)
        tgt = self.target_disparity(y_t, y_t_adv)
        src = src * w_s if w_s is not None else src
        tgt = tgt * w_t if w_t is not None else tgt
        return -self.margin * src.mean() + tgt.mean()


def shift_log(x: torch.Tensor, offset: float = 1e-6) -> torch.Tensor:
    """``log(x + offset)`` clamped to <= 0: a safe log of a probability."""
    return torch.log(torch.clamp(x + offset, max=1.0))


def source_disparity(y: torch.Tensor, y_adv: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the adversarial head against the main head's labels."""
    return F.cross_entropy(y_adv, y.argmax(1), reduction="none")


def target_disparity(y: torch.Tensor, y_adv: torch.Tensor) -> torch.Tensor:
    """``log(1 - p_adv[argmax y])``: the paper's modified (non-saturating) target term."""
    p = F.softmax(y_adv, dim=1).gather(1, y.argmax(1, keepdim=True)).squeeze(1)
    return shift_log(1.0 - p)


class ClassificationMarginDisparityDiscrepancy(MarginDisparityDiscrepancy):
    """MDD for classification. The Method minimises ``-mdd`` (the adversarial head maximises the discrepancy)."""

    def __init__(self, margin: float = 4.0):
        super().__init__(source_disparity, target_disparity, margin)


def adversarial_head(features_dim: int, num_classes: int, width: int = 1024) -> nn.Sequential:
    """tllib's MDD heads: ``Linear -> ReLU -> Dropout(0.5) -> Linear``."""
    return nn.Sequential(nn.Linear(features_dim, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, num_classes))


class MDD(Method):
    name = "mdd"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "margin", "adv_width", "grl_hi")
        self.margin, self.adv_width, self.grl_hi = args.margin, args.adv_width, args.grl_hi
        self.grl_max_iters = grl_horizon(args, total_iters)
        # The reversal ramps to hi=0.1 (MDD's), stepped once an iteration, on DANN's schedule.
        if tllib_losses.wanted(args):
            self.losses = "tllib"
            self.mdd = tllib_losses.margin_disparity(args.margin)
            self.grl = tllib_losses.gradient_reverse(args.grl_hi, self.grl_max_iters)
        else:
            self.mdd = ClassificationMarginDisparityDiscrepancy(args.margin)
            self.grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=args.grl_hi, max_iters=self.grl_max_iters,
                                                     auto_step=True)
        self.adv_head = adversarial_head(model.features_dim, num_classes, args.adv_width)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--margin", type=float, default=4.0, help="margin gamma of the disparity")
        parser.add_argument("--adv-width", type=int, default=1024, help="hidden width of the adversarial head")
        parser.add_argument("--grl-hi", type=float, default=0.1, help="final gradient-reversal coefficient")
        add_grl_args(parser)
        tllib_losses.add_args(parser)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        y_adv = self.adv_head(self.grl(torch.cat([step.f_s, step.f_t])))
        n = len(step.f_s)
        disc = self.mdd(step.logits_s, y_adv[:n], step.logits_t, y_adv[n:])
        # The head minimises -disc (maximises the discrepancy); the reversal makes the features minimise disc.
        return -disc, {"mdd": float(disc.detach())}

    def config(self) -> dict:
        return {"margin": self.margin, "adv_width": self.adv_width, "grl_hi": self.grl_hi,
                "grl_max_iters": self.grl_max_iters, **self.losses_config()}
