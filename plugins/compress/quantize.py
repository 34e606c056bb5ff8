"""PyTorch-side INT8: dynamic (PTDQ), static (PTSQ) and quantization-aware training (QAT), x86 backend.

Static quantization uses FX graph mode (``torch.ao.quantization.quantize_fx``). PT2E is not an option on torch
2.14: ``torch.ao.quantization.quantizer`` (X86InductorQuantizer) moved to torchao, which is not installed, and a
PT2E model only runs INT8 kernels after ``torch.compile`` (Inductor needs a C++ toolchain and minutes of CPU).
FX convert gives real ``quantized::`` kernels (fbgemm/oneDNN) in eager mode.

The classifier's ``backbone``, ``bottleneck`` and ``head`` are quantized as three FX graphs: tracing the whole
``ImageClassifier`` would freeze its train/eval branch (``(logits, features)`` vs ``logits``), and the engine
needs both. Weights: per-channel symmetric INT8, 7-bit or 8-bit by the CPU's INT8 dot product (``--weight-bits``,
:func:`liteda.deploy.machine.int8_weight_bits`); activations: per-tensor UINT8 (``deploy_qconfig``).
"""
from __future__ import annotations

import copy
import warnings
from collections import Counter
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn

from ..utils import fail
from .base import Technique

QUANT_KINDS = ("none", "ptdq", "ptsq", "qat")
WEIGHT_BITS = ("auto", "7", "8")
PARTS = ("backbone", "bottleneck", "head")
BACKEND = "x86"


def _quiet() -> warnings.catch_warnings:
    """torch.ao warns (deprecation notes) on every call; keep the logs readable."""
    return warnings.catch_warnings(action="ignore")


def set_backend() -> None:
    if BACKEND not in torch.backends.quantized.supported_engines:
        fail(f"this torch build has no '{BACKEND}' quantized engine")
    torch.backends.quantized.engine = BACKEND


# ----------------------------------------------------------------------------- dynamic
def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    """PTDQ: INT8 weights for every Linear, activations quantized on the fly (no calibration); convs float."""
    from torch.ao.quantization import quantize_dynamic

    set_backend()
    with _quiet():
        return quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=False)


# ----------------------------------------------------------------------------- static / QAT
def _part_inputs(model: nn.Module, input_size: int) -> dict[str, tuple[torch.Tensor]]:
    """Example inputs of each part (shapes only), from a float forward in eval mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(2, 3, input_size, input_size)
        f = model.backbone(x)
        b = model.bottleneck(f)
    model.train(was)
    return {"backbone": (x,), "bottleneck": (f,), "head": (b,)}


def op_weight_bits(op: dict) -> int:
    """The weight range a recorded ``quantize`` op used: files made before ``weight_bits`` was recorded used 7."""
    return int(op.get("weight_bits", 7))


def resolve_weight_bits(value: str) -> tuple[int, str]:
    """``--weight-bits``: 7, 8, or auto (this CPU's, :func:`liteda.deploy.machine.int8_weight_bits`)."""
    if value == "auto":
        from ..deploy.machine import cpu_flags, int8_weight_bits

        return int8_weight_bits(cpu_flags())
    return int(value), f"{value}-bit weights (--weight-bits {value})"


def deploy_qconfig(qat: bool, weight_bits: int = 7):
    """8-bit activations and 7-bit (|w| <= 63) or 8-bit per-channel weights, for PTSQ observers or QAT
    fake-quant.

    torch's x86 default is 7-bit activations and 8-bit weights: right for fbgemm, wrong for the QDQ export, where
    ONNX Runtime on AVX2 without VNNI multiplies u8 x s8 pairs into saturating 16-bit sums and needs 7-bit weights
    (its own reduce_range): with the x86 default the ORT export scores below the PyTorch model it came from. With
    this qconfig both runtimes compute the same numbers. A CPU with an INT8 dot product sums in 32 bits and takes
    8-bit weights, which halve the weights' rounding step."""
    from torch.ao.quantization import (FusedMovingAvgObsFakeQuantize, HistogramObserver,
                                       MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver,
                                       PerChannelMinMaxObserver, QConfig)

    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits}")
    half = 2 ** (weight_bits - 1)
    w = dict(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-half, quant_max=half - 1)
    a = dict(dtype=torch.quint8, quant_min=0, quant_max=255, reduce_range=False)
    if qat:  # weight ranges follow the current weights (averaging 1), not a lagging average that convert exceeds
        return QConfig(activation=FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, **a),
                       weight=FusedMovingAvgObsFakeQuantize.with_args(
                           observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0, **w))
    return QConfig(activation=HistogramObserver.with_args(**a), weight=PerChannelMinMaxObserver.with_args(**w))


def prepare_static(model: nn.Module, input_size: int, qat: bool = False, weight_bits: int = 7) -> nn.Module:
    """Insert observers (PTSQ, eval mode) or fake-quant + fused ConvBn modules (QAT, train mode), in place."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    set_backend()
    inputs = _part_inputs(model, input_size)
    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(BACKEND)
    # the mapping's fixed-range ops (sigmoid, hardsigmoid) keep theirs
    mapping.set_global(deploy_qconfig(qat, weight_bits))
    model.train(qat)
    prep = prepare_qat_fx if qat else prepare_fx
    with _quiet():
        try:
            for part in PARTS:
                module = getattr(model, part)
                if not list(module.children()):  # a bare Linear would trace to F.linear with a ScriptObject
                    module = nn.Sequential(module)  # weight, which torch.load(weights_only=True) refuses
                setattr(model, part, prep(module, mapping, inputs[part]))
        except Exception as e:  # noqa: BLE001 - an untraceable custom module is a user-level limit
            fail(f"--quantize: FX cannot trace this model: {str(e).splitlines()[0][:120]}")
    return model


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Run unlabeled images through the observers; returns the number of images seen."""
    model.eval()
    n = 0
    for x in batches:
        model(x)
        n += len(x)
    return n


def convert_static(model: nn.Module, input_size: Optional[int] = None) -> nn.Module:
    """Observed/fake-quant model -> ``quantized::`` kernels; with ``input_size``, bias-safe weight scales
    (:func:`widen_tiny_weight_scales`; a structure-only rebuild, whose weights are loaded next, passes None)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    model.eval()
    with _quiet():
        for part in PARTS:
            setattr(model, part, convert_fx(getattr(model, part)))
    if input_size is not None:
        widen_tiny_weight_scales(model, input_size)
    return model


BIAS_LIMIT = 2 ** 30  # |bias| / (input scale x weight scale) stays below this: int32 with headroom for the sums


@torch.no_grad()
def widen_tiny_weight_scales(model: nn.Module, input_size: int) -> int:
    """Raise per-channel weight scales so that every bias fits INT32 at the scale INT8 runtimes give it.

    Why: ONNX Runtime and TensorRT hold a conv's bias as INT32 at ``input scale x weight scale``. A channel whose
    weights are all ~0 (a dead SE output, or a low-rank factor's row) gets the observer's floor scale (1.2e-7);
    with a bias of 3 and an input scale of 0.009 that is 2.8e9 steps, past INT32, and the QDQ export wraps it to
    -2^31 (tests/test_compress.py::test_dead_channel_bias_fits_int32_in_the_qdq_export builds such a channel).
    PyTorch keeps float biases, so only the exported file would be wrong. A wider scale for such a channel changes
    nothing it computes (its weights quantize to ~0 either way). Input scales are static: one zero image reads
    them. Returns the number of channels widened."""
    inputs: dict[str, float] = {}
    layers = {n: m for n, m in model.named_modules()
              if hasattr(m, "set_weight_bias") and callable(getattr(m, "bias", None))}

    def grab(name):
        def hook(module, args):
            if isinstance(args[0], torch.Tensor) and args[0].is_quantized:
                inputs[name] = float(args[0].q_scale())
        return hook

    handles = [m.register_forward_pre_hook(grab(n)) for n, m in layers.items()]
    try:
        model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    widened = 0
    for name, m in layers.items():
        w, b = m.weight(), m.bias()
        per_channel = w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        if b is None or name not in inputs or not per_channel:
            continue
        scales = w.q_per_channel_scales().double()
        need = b.detach().double().abs() / (inputs[name] * BIAS_LIMIT)
        if bool((scales < need).any()):
            new = torch.maximum(scales, need * 1.001)  # margin: the float32 scale must not round below ``need``
            w2 = torch.quantize_per_channel(w.dequantize(), new, w.q_per_channel_zero_points(), w.q_per_channel_axis(),
                                            torch.qint8)
            m.set_weight_bias(w2, b)
            widened += int((scales < need).sum())
    return widened


def quantize_static(model: nn.Module, input_size: int, calibration: Iterable[torch.Tensor],
                    weight_bits: int = 7) -> tuple[nn.Module, int]:
    """PTSQ on a copy-free path: prepare -> calibrate on unlabeled target images -> convert."""
    prepare_static(model, input_size, qat=False, weight_bits=weight_bits)
    n = calibrate(model, calibration)
    return convert_static(model, input_size), n


def quantize_qat(model: nn.Module, input_size: int, train: Callable[[nn.Module], None],
                 weight_bits: int = 7) -> nn.Module:
    """QAT: fake-quant training through ``train(model)`` (the SelfDistill fine-tune), then convert.

    BatchNorm statistics are frozen first: the fused Conv-BN modules then fold the running statistics into the
    weights in training as in eval. With live statistics, MobileNetV3's BN momentum (0.01) leaves the running
    averages far behind a short fine-tune, and the converted model loses most of the float model's accuracy."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats

    prepare_static(model, input_size, qat=True, weight_bits=weight_bits)
    model.apply(freeze_bn_stats)
    train(model)
    refresh_weight_ranges(model, input_size)
    return convert_static(model, input_size)


@torch.no_grad()
def refresh_weight_ranges(model: nn.Module, input_size: int) -> None:
    """Observe the final weights once more (the last optimizer step came after their last observation), with the
    activation observers off, so convert quantizes every weight inside its range."""
    from torch.ao.quantization import FakeQuantizeBase

    acts = [m for n, m in model.named_modules() if isinstance(m, FakeQuantizeBase) and not n.endswith("weight_fake_quant")]
    for m in acts:
        m.disable_observer()
    was = model.training
    model.eval()(torch.zeros(1, 3, input_size, input_size))
    model.train(was)
    for m in acts:
        m.enable_observer()


# ----------------------------------------------------------------------------- what stays float
def float_ops(model: nn.Module) -> list[dict]:
    """Ops of a converted model that compute on float tensors, read off the FX graphs (measured, not assumed).

    Float-ness flows from every ``dequantize`` until a ``quantize_per_tensor``. Each part's ``output`` entry is
    the boundary dequantize: the three parts cost a dequantize + quantize pair each.
    """
    def is_dequant(n) -> bool:
        return (n.op == "call_method" and n.target == "dequantize") or (
            n.op == "call_function" and getattr(n.target, "__name__", "") == "dequantize")

    def is_quant(n) -> bool:
        return n.op == "call_function" and "quantize_per" in getattr(n.target, "__name__", "")

    out = []
    for part in PARTS:
        gm = getattr(model, part, None)
        graph = getattr(gm, "graph", None)
        if graph is None:
            continue
        floating: set = set()
        for node in graph.nodes:
            if is_dequant(node):
                floating.add(node)
                continue
            if is_quant(node) or not any(a in floating for a in node.all_input_nodes):
                continue
            floating.add(node)
            what = (type(gm.get_submodule(node.target)).__name__ if node.op == "call_module"
                    else "output" if node.op == "output" else str(getattr(node.target, "__name__", node.target)))
            out.append({"part": part, "node": node.name, "op": what})
    return out


def is_torch_quantized(model: nn.Module) -> bool:
    """True for an FX-converted model (quantized:: kernels), which exports to ONNX as QDQ, not as FP32."""
    return any(type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
               for m in model.modules())


def quantized_summary(model: nn.Module) -> dict[str, int]:
    """Count of quantized vs float compute modules (Conv/Linear) in the converted model."""
    q = sum(1 for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")
            or type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized"))
    f = sum(1 for m in model.modules() if type(m) in (nn.Conv2d, nn.Linear, nn.Conv1d))
    return {"quantized_modules": q, "float_conv_linear": f}


# ----------------------------------------------------------------------------- technique
def calibration_batches(ctx, n: int) -> Iterator[torch.Tensor]:
    """The first ``n`` batches of unlabeled target-train images (test transform), lazily."""
    return (x for i, (x, _) in enumerate(ctx.data.calibration) if i < n)


class Quantize(Technique):
    """PyTorch INT8 (x86): dynamic Linear weights, static calibrated, or quantization-aware fine-tuning."""

    name = "quantize"
    test_args = ("--quantize", "ptsq", "--calib-batches", "2")
    after_shapes = True  # FX traces the float structure, pruned shapes included

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--quantize", default="none", help=f"{' | '.join(QUANT_KINDS)}")
        group.add_argument("--calib-batches", type=int, default=10,
                           help="PTSQ: batches of unlabeled target-train images")
        group.add_argument("--weight-bits", choices=WEIGHT_BITS, default="auto",
                           help="ptsq/qat INT8 weight range: 8 on CPUs with an INT8 dot product (VNNI, AMX, Arm), "
                                "7 on AVX2 without one, whose INT8 kernels saturate full-range weights (default: "
                                "auto, this CPU's; the choice and its reason are recorded)")
        group.add_argument("--qat-epochs", type=int, default=2,
                           help="QAT's fake-quant fine-tune epochs (the float stages' recovery is --ft-epochs)")
        group.add_argument("--qat-lr", type=float, default=0.0005,
                           help="QAT's fine-tune lr (10x below --ft-lr, at which fake quantization lost accuracy)")

    @staticmethod
    def active(args) -> bool:
        return args.quantize != "none"

    @staticmethod
    def check(args) -> None:
        if args.quantize not in QUANT_KINDS:
            fail(f"--quantize must be one of {', '.join(QUANT_KINDS)}, got '{args.quantize}'")
        if args.calib_batches < 1:
            fail(f"--calib-batches must be >= 1, got {args.calib_batches}")
        if args.quantize == "qat" and args.qat_epochs < 1:
            fail(f"--quantize qat trains with fake quantization: give --qat-epochs >= 1, got {args.qat_epochs}")

    @staticmethod
    def apply(ctx, args) -> None:
        kind = args.quantize
        ctx.float_model = copy.deepcopy(ctx.student).eval()
        extra: dict = {}
        history: list[dict] = []
        op: dict = {"op": "quantize", "kind": kind}
        if kind in ("ptsq", "qat"):
            bits, why = resolve_weight_bits(args.weight_bits)
            op["weight_bits"], extra["weight_bits_reason"] = bits, why
            print(f"[quantize] {why}", flush=True)
        if kind == "ptdq":
            ctx.student = quantize_dynamic_linear(ctx.student)
        elif kind == "ptsq":
            ctx.student, n = quantize_static(ctx.student, ctx.input_size, calibration_batches(ctx, args.calib_batches),
                                             op["weight_bits"])
            extra["calibration_images"] = n
        else:
            extra["lr"], extra["epochs"] = args.qat_lr, args.qat_epochs
            ctx.student = quantize_qat(ctx.student, ctx.input_size,
                                       lambda m: history.extend(ctx.recover("qat", m, args.qat_lr, args.qat_epochs)),
                                       op["weight_bits"])
        if kind in ("ptsq", "qat"):
            extra["float_ops"] = dict(Counter(o["op"] for o in float_ops(ctx.student)))  # measured on the graph
            extra.update(quantized_summary(ctx.student))
        ctx.ops.append(op)
        ctx.log({**op, "backend": BACKEND, **extra}, None, history)

    @staticmethod
    def rebuild(model, op, base):
        if op["kind"] == "ptdq":
            return quantize_dynamic_linear(model)
        return convert_static(prepare_static(model, base["crop_size"], qat=op["kind"] == "qat",
                                             weight_bits=op_weight_bits(op)))
