"""Input-resolution reduction: the student runs on a smaller image than it was trained on.

A CNN's MACs scale with the input's pixel count (MobileNetV3-Small: 224 -> 160 px halves them) and, unlike
channel pruning, no weight changes shape, so every runtime and kernel keeps running the same graph. The
recovery fine-tune shows teacher and student the same crop: the teacher at its own size, the student the crop
downscaled to its new size (:class:`Rescaled`), so the distillation target is the teacher's view of exactly
what the student sees. Evaluation and deployment use the matching test transform (resize in proportion,
centre-crop the new size), recorded with the model so that ONNX export and benchmarks preprocess alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def scaled_resize(resize: int, crop: int, size: int) -> int:
    """The test-time resize that keeps the crop's share of the image when the crop goes from ``crop`` to
    ``size`` px (256/224 -> 183/160)."""
    return int(round(resize * size / crop))


def check_resolution(size: int, crop: int, flag: str = "--resolution") -> None:
    from ..utils import fail

    if not 16 <= size <= crop:
        fail(f"{flag} must be in [16, {crop}] (at most the checkpoint's input size), got {size}")


class Rescaled(nn.Module):
    """``model`` fed its input downscaled (bilinear, antialiased) to ``size`` px: the student's view of a
    batch cropped for the teacher. Parameters and buffers are ``model``'s own."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor):
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.model(x)

    def get_parameters(self, base_lr: float = 1.0) -> list[dict]:
        return self.model.get_parameters(base_lr)
