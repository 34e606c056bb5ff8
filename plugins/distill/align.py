"""Distribution alignment of the teacher's target labels (ReMixMatch, Berthelot et al. 2019; the relative
alignment of AdaMatch, Berthelot et al. 2021).

An adapted teacher still over-predicts some classes on the target (a class that absorbs look-alike classes of the
new domain) and the student copies that. Each cached teacher logit vector is shifted by
``log(prior) - log(mean teacher probability over the unlabeled target set)``: the classes the teacher predicts
more often than the labeled source's class frequencies are damped, the rarer ones raised, and an image's label
changes only where the teacher was unsure between them. Only the teacher's own outputs and the source labels are
read; never a target label.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AlignedLabels:
    logits: torch.Tensor  # (K, N, C) every teacher's logits, shifted by the same log ratio
    shift: torch.Tensor  # (C,) log(prior / mean teacher probability)
    mean_before: torch.Tensor  # (C,) the teacher's mean probability per class on the unlabeled target set
    mean_after: torch.Tensor  # (C,) the same after the shift
    changed: float  # share of images whose argmax label the shift changed


def align_to_prior(logits: torch.Tensor, probs: torch.Tensor, prior: torch.Tensor,
                   eps: float = 1e-6) -> AlignedLabels:
    """``logits`` ``(K, N, C)`` (per teacher), ``probs`` ``(N, C)`` the ensemble's probabilities of the same
    images, ``prior`` ``(C,)`` class frequencies of the labeled data (normalised here). One teacher: its softmax
    becomes ``p * prior / mean(p)``, renormalised (ReMixMatch's rule); several: each teacher's logits take the
    same shift."""
    if logits.ndim != 3 or probs.ndim != 2 or logits.shape[1:] != probs.shape or prior.shape != probs.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)}, probabilities {tuple(probs.shape)} and prior "
                         f"{tuple(prior.shape)} do not pair up")
    prior = prior.float().clamp_min(0)
    if prior.sum() <= 0:
        raise ValueError("the class prior has no mass")
    prior = prior / prior.sum()
    mean_before = probs.float().mean(0)
    shift = prior.clamp_min(eps).log() - mean_before.clamp_min(eps).log()
    shifted = logits + shift.to(logits.dtype)
    after = (probs.float().clamp_min(eps).log() + shift).softmax(1)
    changed = float((after.argmax(1) != probs.argmax(1)).float().mean())
    return AlignedLabels(shifted, shift, mean_before, after.mean(0), changed)
