"""INT8-friendly activations: replace MobileNetV3's Hardswish by ReLU (or ReLU6), shapes and weights kept.

The EfficientNet-Lite recipe (swish -> ReLU6 "for post-training quantization") applied to MobileNetV3. ONNX
Runtime fuses a Conv followed by ReLU/Clip into one INT8 ``QLinearConv`` (the activation becomes the output's
quantization range), while a Hardswish after an INT8 Conv is a float island: DequantizeLinear -> HardSigmoid
-> Mul -> QuantizeLinear around every expanded feature map. On CPUs without VNNI those islands can make ORT INT8
slower than ORT FP32; with ReLU the INT8 graph is a chain of fused integer kernels. ReLU's outputs are also
non-negative, so an unsigned 8-bit activation uses its whole range.

The swap changes the function, so it is followed by the usual recovery fine-tune (distillation from the
unchanged model on unlabeled target images).
"""
from __future__ import annotations

from torch import nn

from ..utils import fail
from .base import Technique

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def swap_activation(model: nn.Module, kind: str) -> int:
    """Replace every ``nn.Hardswish`` of ``model`` in place by a ``kind`` module; returns how many."""
    if kind not in ACTIVATIONS:
        fail(f"--activation must be one of {', '.join(ACTIVATIONS)}, got '{kind}'")
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.Hardswish)]
    if not targets:
        fail("--activation: the model has no Hardswish to replace")
    for name in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, ACTIVATIONS[kind](inplace=False))
    return len(targets)


class Activation(Technique):
    """Hardswish -> ReLU / ReLU6, shapes and weights kept."""

    name = "activation"
    test_args = ("--activation", "relu")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--activation", choices=tuple(ACTIVATIONS), default=None,
                           help="replace every Hardswish (INT8-friendly: ONNX Runtime fuses Conv+ReLU into one INT8 "
                                "kernel)")

    @staticmethod
    def active(args) -> bool:
        return args.activation is not None

    @staticmethod
    def apply(ctx, args) -> None:
        n = swap_activation(ctx.student, args.activation)
        ctx.finish_float_stage({"op": "activation", "kind": args.activation}, replaced=n)

    @staticmethod
    def rebuild(model, op, base):
        swap_activation(model, op["kind"])
        return model
