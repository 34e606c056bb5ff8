"""Recovery fine-tuning after a compression step: self-distillation driven by the engine's Trainer.

The teacher is the uncompressed student (frozen). Per step the engine adds source cross-entropy on labeled
source-train images, and :class:`SelfDistill` adds ``T^2 * KL(teacher || student)`` on unlabeled target-train
images (Hinton et al., 2015). No target label is read: the target loader carries label -1.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..adaptation.base import Method, Step
from ..distill.losses import KnowledgeDistillationLoss
from ..engine import Trainer, TrainConfig
from .resolution import Rescaled


class SelfDistill(Method):
    """Distil the frozen uncompressed model into its compressed copy on unlabeled target images."""

    name = "self_distill"
    uses_target = True
    uses_source_labels = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int,
                 teacher: Optional[nn.Module] = None):
        super().__init__(model, num_classes, args, total_iters)
        if teacher is None:
            raise ValueError("SelfDistill needs the uncompressed model as teacher")
        self.temperature = float(getattr(args, "kd_temperature", 4.0))
        self.kd = KnowledgeDistillationLoss(self.temperature)  # T^2 * KL(teacher || student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        # kept out of the module tree: the teacher is neither trained nor part of the method's checkpoint
        self.__dict__["teacher"] = teacher.eval()

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature T")

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            teacher_logits = self.teacher.eval()(step.x_t).float()
        loss = self.kd(step.logits_t, teacher_logits)
        agree = (step.logits_t.argmax(1) == teacher_logits.argmax(1)).float().mean().item() * 100
        return loss, {"kd_loss": float(loss.detach()), "teacher_agree": agree}

    def config(self) -> dict:
        return {"kd_temperature": self.temperature}


@dataclass
class FinetuneConfig(TrainConfig):
    """One recovery fine-tune: the engine's TrainConfig with a short-budget default, plus the temperature."""

    epochs: int = 2
    iters_per_epoch: int = 50
    lr: float = 0.005
    progress: bool = False
    kd_temperature: float = 4.0


def finetune(model: nn.Module, teacher: nn.Module, labeled: DataLoader, unlabeled: DataLoader,
             cfg: FinetuneConfig, run_dir: Path, epochs: Optional[int] = None,
             input_size: Optional[int] = None) -> list[dict]:
    """Train ``model`` in place with :class:`SelfDistill` through :class:`liteda.engine.Trainer`.

    ``evals`` stays empty: nothing on the target test set is looked at during compression. ``input_size``:
    the student's own input size when it is smaller than the loaders' crops (the teacher's), see
    :mod:`liteda.compress.resolution`. Returns the engine's history rows.
    """
    epochs = cfg.epochs if epochs is None else epochs
    if epochs <= 0:
        return []
    args = argparse.Namespace(kd_temperature=cfg.kd_temperature)
    num_classes = getattr(model, "num_classes", 0)
    method = SelfDistill(model, num_classes, args, epochs * cfg.iters_per_epoch, teacher=teacher)
    if input_size is not None:
        model = Rescaled(model, input_size)
    train_cfg = TrainConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)})
    train_cfg.epochs, train_cfg.channels_last = epochs, False
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, method, labeled, unlabeled, {}, train_cfg, run_dir)
    history = trainer.fit()
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # a resumable state is not needed for a stage
    model.eval()
    return history.rows


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loaders: Sequence[DataLoader], batches: int = 20) -> int:
    """Re-estimate BatchNorm running statistics (cumulative average, no gradient, no label) on batches that mix
    the loaders as training does. Compression shifts every downstream activation, and MobileNetV3's BN momentum
    of 0.01 needs far more than a short recovery fine-tune to catch up: without this, eval mode collapses
    (a pruned student scores at chance in eval mode while agreeing with its teacher in train mode)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or batches <= 0:  # 0 batches: keep the statistics (a reset with nothing seen would zero them)
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    was_training = model.training
    model.train()
    iters, seen = [iter(loader) for loader in loaders], 0
    for _ in range(batches):
        xs = [b[0] for b in (next(it, None) for it in iters) if b is not None]
        if not xs:
            break
        model(torch.cat(xs))
        seen += sum(len(x) for x in xs)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.train(was_training)
    return seen
