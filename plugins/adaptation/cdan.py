"""CDAN / CDAN+E (Long et al., 2018): the discriminator sees features conditioned on the classifier's predictions.

tllib shape: ``ConditionalDomainAdversarialLoss(domain_discriminator, entropy_conditioning, randomized,
num_classes, features_dim, randomized_dim)`` with ``forward(g_s, f_s, g_t, f_t)`` (g: logits, f: features).
Conditioning map: the multilinear map ``f (x) g`` (flattened outer product, ``F*C`` wide) or, with
``--randomized``, ``(f R_f) * (g R_g) / sqrt(d)`` with fixed Gaussian ``R`` (width ``--randomized-dim``).
CDAN+E (``-E``) weights each sample by ``1 + exp(-H(g))``, normalised to mean 1, so confident predictions
dominate the alignment.
"""
from __future__ import annotations

import argparse
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..interop import tllib_losses
from ..metrics import entropy
from .base import Method, Step
from .dann import DomainDiscriminator, add_adversarial_args, binary_accuracy, grl_horizon, require_positive
from .grl import WarmStartGradientReverseLayer


class MultiLinearMap(nn.Module):
    """``(B, F), (B, C) -> (B, F*C)``: the outer product of features and predictions, flattened."""

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


class RandomizedMultiLinearMap(nn.Module):
    """``(f R_f) * (g R_g) / sqrt(output_dim)``; its inner products approximate the multilinear map's."""

    def __init__(self, features_dim: int, num_classes: int, output_dim: int = 1024):
        super().__init__()
        # Fixed random projections: buffers, so a resumed run reuses exactly the same map.
        self.register_buffer("Rf", torch.randn(features_dim, output_dim))
        self.register_buffer("Rg", torch.randn(num_classes, output_dim))
        self.output_dim = output_dim

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.Rf) * (g @ self.Rg) / math.sqrt(self.output_dim)


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """CDAN+E's ``w = 1 + exp(-H(p))``, rescaled to mean 1 over the batch."""
    w = 1.0 + torch.exp(-entropy(probs))
    return w / w.sum() * len(w)


class ConditionalDomainAdversarialLoss(nn.Module):
    def __init__(self, domain_discriminator: DomainDiscriminator, entropy_conditioning: bool = False,
                 randomized: bool = False, num_classes: int = -1, features_dim: int = -1,
                 randomized_dim: int = 1024, grl: Optional[nn.Module] = None):
        super().__init__()
        self.domain_discriminator, self.entropy_conditioning = domain_discriminator, entropy_conditioning
        self.grl = grl if grl is not None else WarmStartGradientReverseLayer(
            alpha=1.0, lo=0.0, hi=1.0, max_iters=1000, auto_step=True)
        if randomized:
            if num_classes <= 0 or features_dim <= 0 or randomized_dim <= 0:
                raise ValueError("randomized CDAN needs num_classes, features_dim and randomized_dim > 0")
            self.map: nn.Module = RandomizedMultiLinearMap(features_dim, num_classes, randomized_dim)
        else:
            self.map = MultiLinearMap()
        self.domain_discriminator_accuracy: float = float("nan")

    def forward(self, g_s: torch.Tensor, f_s: torch.Tensor, g_t: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        f = torch.cat([f_s, f_t])
        g = F.softmax(torch.cat([g_s, g_t]), dim=1).detach()  # the condition, not a path for gradients
        d = self.domain_discriminator.logits(self.grl(self.map(f, g)))
        n = len(f_s)
        w = entropy_weights(g) if self.entropy_conditioning else None
        labels = torch.cat([torch.ones(n, device=d.device), torch.zeros(len(f_t), device=d.device)])
        self.domain_discriminator_accuracy = binary_accuracy(d, labels)
        # One BCE over the joint batch (tllib): with equal batch sizes this is 0.5 * (source + target).
        return F.binary_cross_entropy_with_logits(d, labels, weight=w)


class CDAN(Method):
    name = "cdan"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "hidden_size", "randomized_dim")
        self.knobs = {"entropy": args.entropy, "randomized": args.randomized, "randomized_dim": args.randomized_dim,
                      "hidden_size": args.hidden_size, "grl_max_iters": grl_horizon(args, total_iters)}
        in_feature = args.randomized_dim if args.randomized else model.features_dim * num_classes
        if tllib_losses.wanted(args):
            self.losses = "tllib"
            self.domain_adv = tllib_losses.conditional_domain_adversarial(
                in_feature, args.hidden_size, args.entropy, args.randomized, num_classes, model.features_dim,
                args.randomized_dim, self.knobs["grl_max_iters"])
            return
        grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=self.knobs["grl_max_iters"], auto_step=True)
        self.domain_adv = ConditionalDomainAdversarialLoss(
            DomainDiscriminator(in_feature, args.hidden_size), entropy_conditioning=args.entropy,
            randomized=args.randomized, num_classes=num_classes, features_dim=model.features_dim,
            randomized_dim=args.randomized_dim, grl=grl)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        add_adversarial_args(parser)
        parser.add_argument("-E", "--entropy", action="store_true", help="CDAN+E: entropy conditioning")
        parser.add_argument("-r", "--randomized", action="store_true",
                            help="randomized multilinear map (for many classes x wide features)")
        parser.add_argument("--randomized-dim", type=int, default=1024, help="width of the randomized map")
        tllib_losses.add_args(parser)

    @classmethod
    def variant_name(cls, args: argparse.Namespace, registered: str) -> str:
        return super().variant_name(args, "cdan_e" if args.entropy and registered == "cdan" else registered)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.domain_adv(step.logits_s, step.f_s, step.logits_t, step.f_t)
        return loss, {"domain_acc": float(self.domain_adv.domain_discriminator_accuracy)}

    def config(self) -> dict:
        return {**self.knobs, **self.losses_config()}


class CDANE(CDAN):
    """CDAN+E: CDAN with entropy conditioning on by default."""

    name = "cdan_e"

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        CDAN.add_args(parser)
        parser.set_defaults(entropy=True)
