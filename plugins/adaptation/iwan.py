"""IWAN (Zhang et al., 2018): importance-weighted adversarial adaptation (tllib's partial-DA recipe).

Two discriminators on bottleneck features:
- ``D`` learns source (1) vs target (0) on *detached* features; its output only scores source samples:
  ``w(x_s) = 1 - D(f_s)``, normalised to mean 1 and detached. Source samples that look like the target
  (classes the target shares) get large weights; source-only classes get small ones.
- ``D0`` plays DANN's game through gradient reversal, with the source terms weighted by ``w``.
Plus target entropy minimisation. Transfer loss = ``d0_weight * L_D0(w) + L_D + entropy_weight * r * H(p_t)``
(tllib: ``1.5 * trade_off * L_D0 + trade_off * (L_D + H)``, i.e. ``r = 1``).

``r`` (``--entropy-warmup grl``, the default) is the reversal's own warm-start coefficient, 0 at step 0 rising to 1:
entropy minimisation on the still-unadapted target's predictions locks in their mistakes. Measured on A->W (seed 0):
with ``r = 1`` target accuracy fell from 59% after epoch 1 to 41% by epoch 8 and stayed there; with the warm-up
it ends at 86%. ``--entropy-warmup none``: ``r = 1``.

Design choice: the weights act on the adversarial loss, as in the paper and tllib. The source cross-entropy
stays the engine's plain one (the paper does not weight it), so ``uses_source_labels`` keeps its default.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import entropy
from .base import Method, Step
from .dann import DomainAdversarialLoss, DomainDiscriminator, add_adversarial_args, grl_horizon, require_positive
from .grl import WarmStartGradientReverseLayer


class ImportanceWeightModule(nn.Module):
    """tllib shape: ``get_importance_weight(feature) = (1 - D(f)) / mean(1 - D(f))``, detached."""

    def __init__(self, discriminator: DomainDiscriminator):
        super().__init__()
        self.discriminator = discriminator

    @torch.no_grad()
    def get_importance_weight(self, feature: torch.Tensor) -> torch.Tensor:
        w = 1.0 - torch.sigmoid(self.discriminator.logits(feature))
        return w / w.mean().clamp_min(1e-6)


class IWAN(Method):
    name = "iwan"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "hidden_size")
        self.knobs = {"hidden_size": args.hidden_size, "grl_max_iters": grl_horizon(args, total_iters),
                      "d0_weight": args.d0_weight, "entropy_weight": args.entropy_weight,
                      "entropy_warmup": args.entropy_warmup}
        d = DomainDiscriminator(model.features_dim, args.hidden_size)
        self.domain_adv_d = DomainAdversarialLoss(d, grl=nn.Identity())  # sees detached features: no reversal
        self.importance = ImportanceWeightModule(d)
        grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=self.knobs["grl_max_iters"], auto_step=True)
        self.domain_adv_d0 = DomainAdversarialLoss(DomainDiscriminator(model.features_dim, args.hidden_size), grl)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        add_adversarial_args(parser)
        parser.add_argument("--d0-weight", type=float, default=1.5, help="weight of the weighted adversarial loss")
        parser.add_argument("--entropy-weight", type=float, default=1.0, help="weight of target entropy")
        parser.add_argument("--entropy-warmup", choices=["grl", "none"], default="grl",
                            help="grl: the entropy weight ramps with the reversal coefficient (0 -> 1); none: full from step 0")

    @classmethod
    def variant_name(cls, args: argparse.Namespace, registered: str) -> str:
        return super().variant_name(args, registered + ("_nowarmup" if args.entropy_warmup == "none" else ""))

    def entropy_ramp(self) -> float:
        """The entropy term's share of its weight at this step."""
        return self.domain_adv_d0.grl.coeff if self.knobs["entropy_warmup"] == "grl" else 1.0

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        loss_d = self.domain_adv_d(step.f_s.detach(), step.f_t.detach())
        # D in eval mode for the weights: BatchNorm must not re-normalise by the source batch alone.
        was_training = self.importance.discriminator.training
        self.importance.discriminator.eval()
        w_s = self.importance.get_importance_weight(step.f_s.detach())
        self.importance.discriminator.train(was_training)
        loss_d0 = self.domain_adv_d0(step.f_s, step.f_t, w_s=w_s)
        ent = entropy(F.softmax(step.logits_t, dim=1)).mean()
        ramp = self.entropy_ramp()
        loss = self.knobs["d0_weight"] * loss_d0 + loss_d + self.knobs["entropy_weight"] * ramp * ent
        return loss, {"domain_acc": self.domain_adv_d0.domain_discriminator_accuracy,
                      "weight_std": float(w_s.std()) if len(w_s) > 1 else 0.0, "entropy_ramp": ramp}

    def config(self) -> dict:
        return dict(self.knobs)
