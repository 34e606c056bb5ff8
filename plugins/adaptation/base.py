"""The method contract: a transfer loss over one training step's features and logits.

A method is one file with a ``Method`` subclass plus one line in ``adaptation/__init__.py``. The engine does the
rest (data, forward, source cross-entropy, optimisation, checkpoints), so every regime shares one loop.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass
class Step:
    """Everything a transfer loss may look at in one iteration (target labels are never here)."""

    x_s: torch.Tensor
    labels_s: torch.Tensor
    logits_s: torch.Tensor
    f_s: torch.Tensor
    x_t: Optional[torch.Tensor] = None
    logits_t: Optional[torch.Tensor] = None
    f_t: Optional[torch.Tensor] = None
    iteration: int = 0
    total_iters: int = 1
    idx_t: Optional[torch.Tensor] = None  # the target images' indices in the unlabeled set (not labels)

    @property
    def progress(self) -> float:
        return min(1.0, self.iteration / max(1, self.total_iters))


class Method(nn.Module):
    """Base: no transfer loss (source-only and oracle use it as it is).

    Class attributes tell the engine what a method needs:
    - ``uses_target``: draw an unlabeled target batch each step;
    - ``uses_source_labels``: add cross-entropy on the labeled batch (False for source-free methods);
    - ``frozen``: names of model sub-modules to keep fixed (SHOT freezes the head);
    - ``needs_source_model``: start from the source-only checkpoint of the same task and seed.
    """

    name = "source_only"
    uses_target = False
    uses_source_labels = True
    frozen: tuple[str, ...] = ()
    needs_source_model = False
    losses = "liteda"  # "tllib" when --tllib-losses put tllib's own loss modules in (liteda.interop.tllib_losses)

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__()
        self.num_classes, self.total_iters = num_classes, total_iters

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        """Method-specific flags (defaults from the method's paper)."""

    @classmethod
    def variant_name(cls, args: argparse.Namespace, registered: str) -> str:
        """The method's name in run folders and tables (runner.run_name adds the arch): the registry name, unless
        a flag turns the method into a named variant (``cdan.py -E`` is CDAN+E and must not overwrite CDAN's run).
        A ``--trade-off`` other than 1 is a variant of every method: ``coral.py --trade-off 10`` -> ``coral_tradeoff10``."""
        trade_off = getattr(args, "trade_off", 1.0)
        if trade_off == 1.0 or not cls.uses_target:  # no transfer loss (source-only, oracle): nothing to weigh
            return registered
        return f"{registered}_tradeoff{trade_off:g}"

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        return step.logits_s.new_zeros(()), {}

    def prepare(self, unlabeled_eval: Callable[[], DataLoader], labeled_counts: Optional[torch.Tensor] = None) -> None:
        """Called once before training with a loader factory over the unlabeled target set (test transform,
        items ``(image, index)``) and the labeled data's class counts; most methods need nothing from them."""

    def get_parameters(self, base_lr: float = 1.0) -> list[dict]:
        """Extra trainable modules (discriminators, adversarial heads) at the base learning rate."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": base_lr}] if params else []

    def config(self) -> dict:
        """Method knobs recorded in the run JSON."""
        return {}

    def losses_config(self) -> dict:
        """``{"losses": "tllib"}`` for a method running tllib's loss modules, for its ``config()``; else nothing."""
        return {} if self.losses == "liteda" else {"losses": self.losses}

    def resume_fields(self) -> str:
        """Method settings a resumed run must share with its checkpoint, beyond the engine's own ("" = none):
        resuming under other settings would silently mix two recipes in one run."""
        return "" if self.losses == "liteda" else f"losses={self.losses}"
