"""Binary convolutions (XNOR-Net, Rastegari et al., 2016): chosen dense convs compute on signs of weights and
activations.

``y = (sign(x - t) ⊛ sign(W)) ⊙ α ⊙ K + b`` with

- ``α`` = mean |W| per output channel (XNOR-Net's weight scale), recomputed from the latent float weights;
- ``K`` = the mean of ``|x - t|`` over input channels at each position, box-filtered over the kernel window
  (XNOR-Net's activation scale; for a 1x1 conv it is that mean itself); ``--binary-act-scale none`` drops it:
  signs only, what the binary convolutions of binary runtimes compute (a BatchNorm follows every binarised conv
  here and re-scales each output channel);
- ``t`` = a learnable threshold per input channel (ReActNet's RSign, Liu et al., 2020), initialised to the
  channel's mean input on unlabeled target-train images: MobileNetV3's projection convs read ReLU / Hardswish
  outputs, almost all >= 0, whose plain sign would be +1 nearly everywhere;
- ``sign(0) = +1`` (Larq's convention), so every binary value is -1 or +1.

Training keeps latent float weights; the sign's gradient is the straight-through estimator of Courbariaux et al.
(2016) that XNOR-Net uses, the clipped identity: 1 where |input| <= 1, 0 elsewhere; ``α`` and ``K`` are
differentiated as they are. The first conv, the depthwise convs, the squeeze-excite convs and the classifier stay
float, as in XNOR-Net. The recovery fine-tune (self-distillation from the float student on unlabeled target
images, :mod:`liteda.compress.finetune`) trains the binarised student; then the BatchNorm after each binary layer
folds into its ``α`` and bias (exact). Static INT8 (``--quantize ptsq|qat``, applied after this technique) leaves
the binary layers float and exact: each is one FX node (:func:`binary_conv2d`).

PyTorch and ONNX Runtime run a binarised layer as a float convolution on ±1 values: the model here measures the
accuracy of the binary network, not its speed. :func:`binary_measures` reports what a binary runtime would store
(1 bit per weight plus the float ``α``) and execute (binary multiply-accumulates, BOPs, beside the float MACs).
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..utils import fail
from .base import Technique
from .layer_inputs import mean_input_statistic

LAYER_SETS = ("pointwise", "expand", "project", "pointwise+last")
ACT_SCALES = ("k", "none")
# unlabeled target-train batches (test transform) that set the thresholds' initial values
THRESHOLD_BATCHES = 8
# the usual equivalence of binary and float work (Bi-Real Net, ReActNet): 64 BOPs per float MAC
BOPS_PER_MAC = 64


# ----------------------------------------------------------------------------- the binary convolution
def sign_ste(x: torch.Tensor, ste: bool) -> torch.Tensor:
    """-1 / +1 by the sign of ``x`` (0 -> +1). With ``ste`` the backward pass is the clipped identity: gradient 1
    where |x| <= 1, 0 elsewhere; the forward value stays exactly ±1 (``v - v.detach()`` is exactly 0)."""
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    if not ste:
        return sign
    inside = torch.where(x.abs() <= 1, x, x.detach())  # carries x's gradient only where |x| <= 1
    return sign + (inside - inside.detach())


def binary_conv2d(x: torch.Tensor, weight: torch.Tensor, threshold: torch.Tensor, bias: Optional[torch.Tensor],
                  kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], act_scale: str,
                  ste: bool) -> torch.Tensor:
    """XNOR-Net's ``(sign(x - t) ⊛ sign(W)) ⊙ α ⊙ K + b`` (see the module docstring); ``ste``: straight-through
    gradients for both signs (training)."""
    alpha = weight.abs().mean(dim=(1, 2, 3), keepdim=True)  # per output channel
    shifted = x - threshold.view(1, -1, 1, 1)
    y = F.conv2d(sign_ste(shifted, ste), sign_ste(weight, ste) * alpha, None, stride, padding)
    if act_scale == "k":
        k = shifted.abs().mean(1, keepdim=True)
        if kernel_size != (1, 1):  # XNOR-Net's box filter: the mean over each kernel window
            k = F.avg_pool2d(k, kernel_size, stride, padding)
        elif stride != (1, 1):
            k = k[:, :, ::stride[0], ::stride[1]]
        y = y * k
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


# One node for FX: static INT8 quantization (--quantize ptsq/qat) then leaves the binary layers float and exact,
# instead of folding sign(W)·α into INT8 weights and re-quantizing the ±1 activations.
torch.fx.wrap("binary_conv2d")


class BinaryConv2d(nn.Module):
    """A dense convolution on binary weights and activations, XNOR-Net style (see the module docstring).

    ``weight`` holds the latent float weights, ``threshold`` the per-input-channel shift before the sign. In
    training mode the signs pass gradients straight through; in eval mode they are plain ops (ONNX:
    GreaterOrEqual / Where; the file keeps the latent weights, and ONNX Runtime folds sign(W)·α into a constant
    when it loads it)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=1, stride=1, padding=0, bias: bool = False,
                 act_scale: str = "k"):
        super().__init__()
        if act_scale not in ACT_SCALES:
            fail(f"--binary-act-scale must be one of {', '.join(ACT_SCALES)}, got '{act_scale}'")
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        self.act_scale = act_scale
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, *self.kernel_size))
        self.threshold = nn.Parameter(torch.zeros(in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, act_scale: str = "k") -> "BinaryConv2d":
        """The binary counterpart of a dense ``conv`` (latent weights and bias copied, thresholds 0)."""
        if conv.groups != 1 or conv.dilation != (1, 1) or not isinstance(conv.padding, tuple):
            fail(f"binary: only dense, undilated convs with numeric padding can be binarised, not {conv}")
        b = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.bias is not None, act_scale)
        with torch.no_grad():
            b.weight.copy_(conv.weight)
            if conv.bias is not None:
                b.bias.copy_(conv.bias)
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_conv2d(x, self.weight, self.threshold, self.bias, self.kernel_size, self.stride, self.padding,
                             self.act_scale, self.training)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, act_scale={self.act_scale}")


# ----------------------------------------------------------------------------- which convs
def inverted_residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The inverted-residual blocks (torchvision's MobileNetV2/V3 ``InvertedResidual``) in forward order; block
    k (1-based) is ``backbone.features.k`` of MobileNetV3, whose ``features.0`` is the stem conv."""
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ == "InvertedResidual"]


def dense_pointwise(module: nn.Module, prefix: str) -> list[str]:
    """Names of the dense 1x1 convs of ``module`` in forward order, squeeze-excite convs excluded (they act on
    a pooled vector: binarising them saves a few weights and no compute)."""
    from torchvision.ops.misc import SqueezeExcitation

    se = {f"{n}." for n, m in module.named_modules() if isinstance(m, SqueezeExcitation)}
    return [f"{prefix}.{n}" if n else prefix for n, m in module.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size == (1, 1)
            and not any(n.startswith(s) for s in se)]


def select_layers(model: nn.Module, layers: str, from_block: int) -> list[str]:
    """``--binary-layers`` of the inverted-residual blocks ``from_block`` onwards: ``pointwise`` (expansion and
    projection 1x1 convs), ``expand``, ``project``, or ``pointwise+last`` (also the dense 1x1 convs after the last
    block, MobileNetV3's 96 -> 576 conv)."""
    if layers not in LAYER_SETS:
        fail(f"--binary-layers must be one of {', '.join(LAYER_SETS)}, got '{layers}'")
    blocks = inverted_residual_blocks(model)
    if not blocks:
        fail("--binary: the model has no inverted-residual blocks (MobileNetV2/V3) to binarise")
    if not 1 <= from_block <= len(blocks):
        fail(f"--binary-from-block must be in [1, {len(blocks)}] (the model's inverted-residual blocks), "
             f"got {from_block}")
    names: list[str] = []
    for prefix, block in blocks[from_block - 1:]:
        convs = dense_pointwise(block, prefix)
        expand, project = (convs[:1], convs[1:]) if len(convs) > 1 else ([], convs)
        names += {"expand": expand, "project": project}.get(layers, expand + project)
    if layers == "pointwise+last":
        last_prefix = blocks[-1][0]
        parent, _, index = last_prefix.rpartition(".")
        container = model.get_submodule(parent)
        for child_name, child in container.named_children():
            if child_name.isdigit() and int(child_name) > int(index):
                names += dense_pointwise(child, f"{parent}.{child_name}")
    return names


def input_channel_means(model: nn.Module, names: list[str], batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean input of each named conv per input channel over ``batches``."""
    def channel_sum(x: torch.Tensor) -> tuple[torch.Tensor, int]:
        return x.sum(dim=(0, 2, 3)), x.numel() // x.shape[1]

    return {n: m.float() for n, m in mean_input_statistic(model, names, batches, channel_sum).items()}


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def binarize(model: nn.Module, names: list[str], act_scale: str,
             thresholds: dict[str, torch.Tensor] | None = None) -> None:
    """Replace each named ``nn.Conv2d`` by its :class:`BinaryConv2d` (thresholds from ``thresholds``, else 0)."""
    for name in names:
        conv = model.get_submodule(name)
        if not isinstance(conv, nn.Conv2d):
            fail(f"binary: '{name}' is a {type(conv).__name__}, not a Conv2d")
        new = BinaryConv2d.from_conv(conv, act_scale)
        if thresholds and name in thresholds:
            with torch.no_grad():
                new.threshold.copy_(thresholds[name])
        set_submodule(model, name, new)


def following_batchnorm(model: nn.Module, name: str) -> Optional[str]:
    """The BatchNorm2d right after conv ``name`` in its Sequential (``x.0`` -> ``x.1``), if any."""
    parent, _, child = name.rpartition(".")
    if not child.isdigit():
        return None
    bn_name = f"{parent}.{int(child) + 1}" if parent else str(int(child) + 1)
    try:
        bn = model.get_submodule(bn_name)
    except AttributeError:
        return None
    return bn_name if isinstance(bn, nn.BatchNorm2d) else None


@torch.no_grad()
def fold_batchnorm(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Fold the BatchNorm after each named :class:`BinaryConv2d` into it and drop it (``nn.Identity``); returns
    ``{conv: batchnorm}``. Exact, as for a float conv: scaling the latent weights of output channel c by
    ``s_c = γ_c / σ_c`` scales sign(W)·α by ``s_c`` (α is mean |W|), and the shift becomes the bias. Without the
    fold, static INT8 leaves a standalone quantized BatchNorm after each binary layer, which ONNX cannot export."""
    folded = {}
    for name in names:
        bn_name = following_batchnorm(model, name)
        if bn_name is None:
            continue
        conv, bn = model.get_submodule(name), model.get_submodule(bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        set_submodule(model, bn_name, nn.Identity())
        folded[name] = bn_name
    return folded


def unfolded_shell(model: nn.Module, folded: dict[str, str]) -> None:
    """Replay :func:`fold_batchnorm`'s structure on a rebuilt model (values are loaded afterwards)."""
    for name, bn_name in folded.items():
        conv = model.get_submodule(name)
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        set_submodule(model, bn_name, nn.Identity())


# ----------------------------------------------------------------------------- what a binary runtime would hold
def binary_layers(model: nn.Module) -> dict[str, BinaryConv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, BinaryConv2d)}


def packed_bytes(layer: BinaryConv2d) -> int:
    """A binarised layer's weights at 1 bit each (rows padded to whole bytes) plus α in float32."""
    per_channel_bits = layer.weight[0].numel()
    return layer.out_channels * (-(-per_channel_bits // 8) + 4)


@torch.no_grad()
def binary_ops(model: nn.Module, input_size: int) -> dict[str, int]:
    """Binary multiply-accumulates (BOPs: XNOR + popcount per weight bit) of the binarised layers at batch 1."""
    layers = binary_layers(model)
    bops: dict[str, int] = {}

    def hook(name):
        def fn(module, inputs, output):
            bops[name] = output[0].numel() * module.weight[0].numel()
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return bops


def binary_measures(model: nn.Module, input_size: int, macs: int, state_dict_mb: float) -> dict:
    """Size and operations of a model with binarised layers, the usual way binary networks are reported:

    - ``bops``: binary MACs; ``float_macs``: every other MAC (``macs`` from FlopCounterMode, which counts the
      binarised convs as float convs, less the BOPs); ``equivalent_macs = float_macs + bops / 64``;
    - ``binary_weight_mb_float``: the binarised layers' latent float weights as stored; ``..._packed``: the same
      weights at 1 bit plus float32 α; ``packed_mb``: the state_dict size with the former replaced by the latter.
    Sizes in MB (10^6 bytes). Empty for a model without binarised layers."""
    layers = binary_layers(model)
    if not layers:
        return {}
    bops = sum(binary_ops(model, input_size).values())
    float_bytes = sum(m.weight.numel() * m.weight.element_size() for m in layers.values())
    packed = sum(packed_bytes(m) for m in layers.values())
    return {"binary": {
        "layers": list(layers), "binary_weights": sum(m.weight.numel() for m in layers.values()),
        "bops": bops, "float_macs": macs - bops, "equivalent_macs": (macs - bops) + bops / BOPS_PER_MAC,
        "binary_weight_mb_float": float_bytes / 1e6, "binary_weight_mb_packed": packed / 1e6,
        "packed_mb": state_dict_mb - (float_bytes - packed) / 1e6,
        "act_scale": sorted({m.act_scale for m in layers.values()}),
    }}


# ----------------------------------------------------------------------------- technique
def threshold_batches(ctx) -> Iterable[torch.Tensor]:
    """The first batches of unlabeled target-train images (test transform): the deployment domain's inputs."""
    return (x for i, (x, _) in enumerate(ctx.data.calibration) if i < THRESHOLD_BATCHES)


class Binary(Technique):
    """XNOR-Net binary convolutions (sign weights and activations, α per output channel) for chosen 1x1 convs."""

    name = "binary"
    test_args = ("--binary", "--binary-from-block", "10")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--binary", action="store_true",
                           help="binarise weights and activations of the chosen convs (XNOR-Net; first conv, "
                                "depthwise, squeeze-excite convs and classifier stay float)")
        group.add_argument("--binary-layers", choices=LAYER_SETS, default="pointwise",
                           help="which dense 1x1 convs of the chosen blocks: expansion and projection (pointwise), "
                                "one of them, or both plus the 1x1 conv after the last block (pointwise+last)")
        group.add_argument("--binary-from-block", type=int, default=9, metavar="K",
                           help="binarise inverted-residual blocks K.. (MobileNetV3-Small has 11; 9: its last three, "
                                "the widest pointwise convs)")
        group.add_argument("--binary-act-scale", choices=ACT_SCALES, default="k",
                           help="k: XNOR-Net's per-position activation scale; none: signs only (as binary runtimes' "
                                "kernels compute)")

    @staticmethod
    def active(args) -> bool:
        return args.binary

    @staticmethod
    def check(args) -> None:
        if args.binary_from_block < 1:
            fail(f"--binary-from-block must be >= 1, got {args.binary_from_block}")

    @staticmethod
    def apply(ctx, args) -> None:
        names = select_layers(ctx.student, args.binary_layers, args.binary_from_block)
        if not names:
            fail(f"--binary-layers {args.binary_layers} selects no conv from block {args.binary_from_block} on")
        thresholds = input_channel_means(ctx.student, names, threshold_batches(ctx))
        binarize(ctx.student, names, args.binary_act_scale, thresholds)
        op = {"op": "binary", "layers": names, "act_scale": args.binary_act_scale}
        ctx.finish_float_stage(op, from_block=args.binary_from_block, layer_set=args.binary_layers,
                               binary_weights=sum(m.weight.numel() for m in binary_layers(ctx.student).values()))
        # once trained (BatchNorm statistics re-estimated by the recovery), the BatchNorms fold into the binary
        # layers; ``op`` is the dict the pipeline recorded, so the reload replays the fold
        op["folded_bn"] = fold_batchnorm(ctx.student, names)

    @staticmethod
    def rebuild(model, op, base):
        binarize(model, op["layers"], op["act_scale"])
        unfolded_shell(model, op.get("folded_bn", {}))
        return model
