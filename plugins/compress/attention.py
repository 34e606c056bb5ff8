"""Lighter attention for MobileNetV3: replace its Squeeze-and-Excitation blocks, shapes kept.

MBV3-Small's nine SE blocks hold about 0.46 M of the 0.93 M feature-extractor parameters (two 1x1 convs each),
so a cheaper gate is a direct size win. Every module here maps ``x (N, C, H, W) -> x * gate`` like SE does.

- ``eca``: ECA-Net (Wang et al., CVPR 2020): a 1-D conv of adaptive size k(C) across pooled channels.
- ``cbam``: CBAM (Woo et al., ECCV 2018): channel attention (a shared MLP, reduction 16, over average- and
  max-pooled channels) then spatial attention (a 7x7 conv over the normalized [channel-mean, channel-max]).
- ``ulsam``: ULSAM (Saini et al., WACV 2020): per channel subspace, depthwise 1x1 -> 3x3 max-pool -> 1x1 to one
  map -> spatial softmax; ``out_g = x_g * A_g + x_g``.
- ``lsas``: LSAS-style (Zhong et al., ICME 2023 use high-order sub-attention to correct a base attention).
  Here: an ECA gate, then a second-order ECA sub-attention computed on the gated features; ``x * a1 * a2``.
  Our lightweight reading of the idea, not a reproduction of the paper's module.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import fail
from .base import Technique


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel: the odd number nearest |log2(C) / gamma + b / gamma|."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 else k + 1


class ECA(nn.Module):
    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        k = kernel_size or eca_kernel_size(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gate = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        # flatten/transpose/reshape_as, not unsqueeze: the ONNX exporter has quantized forms only for these,
        # and an FX-quantized ECA must export as QDQ (an ECA left in float breaks the FX PTSQ model)
        p = self.pool(x)  # (N, C, 1, 1)
        y = p.flatten(2).transpose(1, 2)  # (N, 1, C): channels become the conv's length axis
        return self.gate(self.conv(y)).transpose(1, 2).reshape_as(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialAttention(nn.Module):
    """CBAM's spatial branch: a 7x7 conv over [channel-mean, channel-max] maps, normalized first."""

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        # BatchNorm on the two descriptor maps: in MobileNetV3 the channel maxima reach the hundreds, and the 7x7
        # conv's updates scale with them; unnormalized, the first fine-tune steps saturate the gate and the student
        # falls to chance. CBAM's own code normalizes after the conv; before it, a zero-initialized conv still
        # starts the gate at 0.5 (BN of a constant map would divide by ~0).
        self.norm = nn.BatchNorm2d(2)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # Zero weights: the fresh gate starts at a uniform 0.5 (a scale the next BN undoes) instead of a sigmoid
        # saturated by random 7x7 weights.
        nn.init.zeros_(self.conv.weight)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * self.gate(self.conv(self.norm(desc)))


class ChannelAttention(nn.Module):
    """CBAM's channel branch: one MLP (1x1 convs) over the average- and the max-pooled descriptor, summed."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        # Zero last layer: the fresh gate starts at 0.5 everywhere rather than at a random sigmoid of raw maxima
        # (hundreds in MobileNetV3) that switches channels off before any step.
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))


class CBAM(nn.Module):
    """Channel then spatial attention (both gates start at 0.5, so the block starts as x/4: the fine-tune's BN
    statistics and the next layers absorb the scale)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ULSAM(nn.Module):
    """Ultra-lightweight subspace attention: one spatial attention map per group of channels."""

    def __init__(self, channels: int, groups: int = 4):
        super().__init__()
        while channels % groups:
            groups -= 1
        self.groups = groups
        self.group_channels = c = channels // groups
        self.dw = nn.ModuleList(nn.Conv2d(c, c, 1, groups=c) for _ in range(groups))
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.pw = nn.ModuleList(nn.Conv2d(c, 1, 1) for _ in range(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, c = [], self.group_channels
        for g, (dw, pw) in enumerate(zip(self.dw, self.pw)):  # slices, not torch.chunk: FX-traceable
            part = x[:, g * c:(g + 1) * c]
            a = pw(self.pool(dw(part)))
            a = F.softmax(a.flatten(2), -1).reshape(a.shape)
            outs.append(part * a + part)
        return torch.cat(outs, 1)


class LSAS(nn.Module):
    """ECA gate refined by a high-order sub-attention on the gated features (order 2 by default)."""

    def __init__(self, channels: int, order: int = 2):
        super().__init__()
        self.levels = nn.ModuleList(ECA(channels) for _ in range(order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.ones_like(x[:, :, :1, :1])
        for eca in self.levels:
            gate = gate * eca.attention(x * gate)
        return x * gate


ATTENTIONS: dict[str, type[nn.Module]] = {"eca": ECA, "cbam": CBAM, "ulsam": ULSAM, "lsas": LSAS}


def is_squeeze_excitation(m: nn.Module) -> bool:
    from torchvision.ops.misc import SqueezeExcitation

    return isinstance(m, SqueezeExcitation) or type(m).__name__ in ("SqueezeExcitation", "SqueezeExcite")


def swap_attention(model: nn.Module, kind: str) -> int:
    """Replace every SE block of ``model`` in place by a fresh ``kind`` module; returns how many."""
    if kind not in ATTENTIONS:
        fail(f"--attention must be one of {', '.join(ATTENTIONS)}, got '{kind}'")
    targets = [(name, m) for name, m in model.named_modules() if is_squeeze_excitation(m)]
    if not targets:
        fail("--attention: the model has no Squeeze-and-Excitation blocks to replace")
    for name, se in targets:
        channels = se.fc1.in_channels if hasattr(se, "fc1") else se.conv_reduce.in_channels
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, ATTENTIONS[kind](channels))
    return len(targets)


class Attention(Technique):
    """Replace the Squeeze-and-Excitation blocks by a lighter gate."""

    name = "attention"
    test_args = ("--attention", "eca")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--attention", choices=tuple(ATTENTIONS), default=None, help="replace the SE blocks")

    @staticmethod
    def active(args) -> bool:
        return args.attention is not None

    @staticmethod
    def apply(ctx, args) -> None:
        n = swap_attention(ctx.student, args.attention)
        ctx.finish_float_stage({"op": "attention", "kind": args.attention}, replaced=n)

    @staticmethod
    def rebuild(model, op, base):
        swap_attention(model, op["kind"])
        return model
