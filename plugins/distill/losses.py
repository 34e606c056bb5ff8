"""Distillation losses over student and teacher logits/features (tllib style: ``nn.Module`` losses).

:class:`KnowledgeDistillationLoss` (Hinton et al., 2015), :class:`FeatureDistillationLoss`,
:class:`ClassBalancedPseudoLabelLoss` and :class:`DomainMixupLoss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KnowledgeDistillationLoss(nn.Module):
    """``T^2 * KL(softmax(y_t / T) || softmax(y_s / T))``, averaged over the batch (Hinton et al.).

    The ``T^2`` factor keeps the gradient scale of the soft targets independent of ``T``.
    """

    def __init__(self, T: float = 4.0):
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature must be positive, got {T}")
        self.T = float(T)

    def forward(self, y_s: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        log_p_t = F.log_softmax(y_t.detach() / self.T, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * self.T ** 2


class FeatureDistillationLoss(nn.Module):
    """Squared distance between L2-normalised teacher features and projected student features.

    The linear projector bridges the dimensions (and is trained with the student); normalising makes the
    loss scale-free (``2 - 2 cos``), so teachers with larger feature norms do not dominate.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        z_s = F.normalize(self.projector(f_s), dim=1)
        z_t = F.normalize(f_t.detach(), dim=1)
        return (z_s - z_t).pow(2).sum(1).mean()


class ClassBalancedPseudoLabelLoss(nn.Module):
    """Cross-entropy on confident teacher labels, each class weighted by the inverse of its running frequency.

    Confident pseudo-labels over-represent easy classes; without re-weighting, self-training drifts toward
    them. The frequency is an exponential moving average of the confident labels' histogram (a single batch
    holds too few samples per class on Office-31).
    """

    def __init__(self, num_classes: int, threshold: float = 0.9, momentum: float = 0.9):
        super().__init__()
        self.num_classes, self.threshold, self.momentum = num_classes, threshold, momentum
        self.register_buffer("class_freq", torch.full((num_classes,), 1.0 / num_classes))

    def class_weights(self) -> torch.Tensor:
        return 1.0 / (self.num_classes * self.class_freq.clamp_min(1e-3))

    def forward(self, y_s: torch.Tensor, teacher_probs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Returns the loss and the fraction of the batch that passed the threshold."""
        confidence, pseudo = teacher_probs.max(1)
        mask = confidence >= self.threshold
        if not mask.any():
            return y_s.new_zeros(()), 0.0
        if self.training:
            hist = torch.bincount(pseudo[mask], minlength=self.num_classes).float()
            self.class_freq.mul_(self.momentum).add_(hist / hist.sum(), alpha=1 - self.momentum)
        loss = F.cross_entropy(y_s[mask], pseudo[mask], weight=self.class_weights().to(y_s.dtype))
        return loss, float(mask.float().mean())


class DomainMixupLoss(nn.Module):
    """Soft cross-entropy of the student on pixel-wise mixes of a source and a target image (inter-domain mixup).

    Each pair is mixed with its own ``lam ~ Beta(alpha, alpha)``; the target of the mix is ``lam`` times the
    source image's one-hot label plus ``1 - lam`` times the teacher's probabilities for the target image, so the
    student is asked to behave linearly between the domains, where neither domain's data lies.
    """

    def __init__(self, num_classes: int, alpha: float = 1.0):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be positive, got {alpha}")
        self.num_classes, self.alpha = num_classes, float(alpha)

    def forward(self, student, x_s: torch.Tensor, labels_s: torch.Tensor, x_t: torch.Tensor,
                teacher_probs: torch.Tensor) -> torch.Tensor:
        """``student``: images -> logits, or ``(logits, features)`` as a LiteDA classifier returns in training;
        pairs the first ``min(len(x_s), len(x_t))`` images."""
        n = min(len(x_s), len(x_t))
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((n,)).to(x_s.device)
        x = lam.view(-1, 1, 1, 1) * x_s[:n] + (1 - lam.view(-1, 1, 1, 1)) * x_t[:n]
        y = (lam.view(-1, 1) * F.one_hot(labels_s[:n], self.num_classes).float()
             + (1 - lam.view(-1, 1)) * teacher_probs[:n].detach().float())
        out = student(x.to(x_s.dtype))
        logits = out[0] if isinstance(out, tuple) else out
        return -(y * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
