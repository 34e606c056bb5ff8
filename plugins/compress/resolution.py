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

from ..metrics import count_flops
from .base import Technique


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


class Resolution(Technique):
    """Run the student on smaller inputs, distilled from the full-size model on the same crops."""

    name = "resolution"
    test_args = ("--resolution", "24")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--resolution", type=int, default=None, metavar="PX",
                           help="run the student on PX x PX inputs (e.g. 160: about half the MACs of 224), distilled "
                                "from the full-size model on the same crops")

    @staticmethod
    def active(args) -> bool:
        return args.resolution is not None

    @staticmethod
    def check_input(args, transform) -> None:
        if args.resolution is not None:
            check_resolution(args.resolution, transform.crop)

    @staticmethod
    def apply(ctx, args) -> None:
        size = args.resolution
        if size == ctx.input_size:  # already the model's own size: nothing to change or record
            return
        check_resolution(size, ctx.view_size)
        before = ctx.evaluate()
        ctx.use_input_size(size, scaled_resize(ctx.resize, ctx.input_size, size))
        ctx.finish_float_stage({"op": "resolution", "size": size, "resize": ctx.resize},
                               target_test_acc_at_full_size=before["acc"], **count_flops(ctx.student, size))
