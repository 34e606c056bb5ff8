"""Label-free fidelity of a compressed model to the model it was made from, on strong views of unlabeled
target-train images.

Top-1 agreement on target-train images at the test transform sees little of what a compression costs: the student
was distilled on exactly those images, so its margins there are wide, and a compression that loses target-test
images still agrees on all of them. FixMatch-strong views of the same images (random resized crop, flip,
RandAugment, cutout; fixed draws, so every model sees the same views) probe a neighbourhood the student was not
fitted to: on the ``1mb`` runs, agreement on them ranked compressions by the accuracy they cost better than
agreement on plain views (``benchmarks/studies/officecaltech_t30_seeds/view_agreement_1mb.md``). The mean
KL(reference || model) over them moves with every view, not only with those whose top-1 flips; the fine-tune
guard's decisions on it are in ``ft_guard_views.md`` there.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..datasets import build_transform

VIEW_SCALE = (0.5, 1.0)  # crop scale of the random views: a view still shows most of the object
DRAWS = 2                # strong views per image
SEED = 0                 # the views' draws: the same for every model compared


def view_transform(view: str, crop: int, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
    """``plain`` (the test transform), ``weak`` (random resized crop + flip) or ``strong`` (weak + RandAugment and
    cutout) views of a cached image."""
    if view == "plain":
        return build_transform(False, crop, mean, std)
    if view not in ("weak", "strong"):
        raise ValueError(f"unknown view '{view}'")
    return build_transform(True, crop, mean, std, scale=VIEW_SCALE, strong=view == "strong")


def view_batches(loader: DataLoader, draws: int = DRAWS, seed: int = SEED) -> Iterator[torch.Tensor]:
    """``draws`` passes over a loader of random views, drawn from ``seed`` whatever the global generator's state
    (and leaving it as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(draws):
            for x, *_ in loader:
                yield x


@torch.no_grad()
def view_logits(model: nn.Module, loader: DataLoader, draws: int = DRAWS) -> torch.Tensor:
    was = model.training
    model.eval()
    out = torch.cat([model(x).float() for x in view_batches(loader, draws)])
    model.train(was)
    return out


class Fidelity:
    """KL(reference || model) and top-1 agreement on the strong views of ``loader`` (unlabeled target-train at
    the reference's input size); the reference's outputs are computed once."""

    def __init__(self, reference: nn.Module, loader: DataLoader, draws: int = DRAWS):
        self.loader, self.draws = loader, draws
        self.reference = view_logits(reference, loader, draws)

    def __call__(self, model: nn.Module) -> dict:
        logits = view_logits(model, self.loader, self.draws)
        kl = F.kl_div(F.log_softmax(logits, 1), F.log_softmax(self.reference, 1), log_target=True,
                      reduction="batchmean")
        agree = (logits.argmax(1) == self.reference.argmax(1)).float().mean() * 100
        return {"kl_strong": float(kl), "agree_strong": float(agree), "strong_views": len(logits)}
