"""The compression techniques (in the order they are applied) and the named recipes.

A technique is one file with a :class:`liteda.compress.base.Technique` subclass plus one line here; the CLI,
the checks, the pipeline and the reload of a ``compressed.pt`` all follow this registry. Plugins add entries
with ``TECHNIQUES.register(name, cls)`` / ``RECIPES.register(name, Recipe(...))`` (see :mod:`liteda.registry`).
"""
from __future__ import annotations

from ..registry import Registry
from .recipes import Recipe

TECHNIQUES = Registry("compression technique", {
    "resolution": "liteda.compress.resolution:Resolution",
    "activation": "liteda.compress.activation:Activation",
    "attention": "liteda.compress.attention:Attention",
    "prune": "liteda.compress.prune:Prune",
    "lowrank": "liteda.compress.lowrank:LowRank",
    "binary": "liteda.compress.binary:Binary",
    "quantize": "liteda.compress.quantize:Quantize",
})

RECIPES = Registry("compression recipe", {
    "1mb": Recipe(
        "1mb", "≤ 1 MB INT8 student (whitened SVD + PTSQ)",
        ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--lowrank-whiten", "full", "--ft-epochs", "0",
         "--bn-batches", "0", "--quantize", "ptsq"],
        "The recommended deployable recipe: SE 1x1 convs and the Linear tail factorised at rank ratio 0.25 by an "
        "SVD whitened with each layer's input statistics, no recovery fine-tune (the strong-view KL guard undid it "
        "on every measured run: benchmarks/studies/officecaltech_t30_seeds/ft_guard_views.md), static INT8 "
        "calibrated on unlabeled target images with the weight range of this CPU (--weight-bits auto)."),
    "eca": Recipe(
        "eca", "compressed student (ECA + low-rank tail)",
        ["--attention", "eca", "--lowrank-ratio", "0.25", "--lowrank-layers", "linear", "--ft-epochs", "4"],
        "SE -> ECA and a rank-25% SVD of the Linear tail, recovered by self-distillation; a float model that the "
        "deploy stage quantizes (ONNX Runtime INT8)."),
    "qat": Recipe(
        "qat", "compressed student + QAT",
        ["--quantize", "qat", "--qat-epochs", "2", "--qat-lr", "0.0005"],
        "Quantization-aware fine-tune of a float compressed run (give that run as --run), exported as INT8 QDQ.",
        parent="eca"),
    "lowres": Recipe(
        "lowres", "student at lower input resolution (160 px)",
        ["--resolution", "160", "--ft-epochs", "4"],
        "The model run on 160 px inputs, distilled from its full-size self on the same crops."),
    "relu": Recipe(
        "relu", "student with ReLU activations",
        ["--activation", "relu", "--ft-epochs", "4"],
        "Hardswish -> ReLU: ONNX Runtime fuses Conv+ReLU into one INT8 kernel (EfficientNet-Lite's recipe)."),
    "relu160": Recipe(
        "relu160", "ReLU student at 160 px",
        ["--resolution", "160", "--activation", "relu", "--ft-epochs", "4"],
        "The two speed changes together: 160 px inputs and Hardswish -> ReLU (ONNX Runtime fuses Conv+ReLU into "
        "one INT8 kernel), each recovered by self-distillation; deployed as INT8."),
    "prune160": Recipe(
        "prune160", "student at 160 px, 25 % of channels pruned (multiples of 16)",
        ["--resolution", "160", "--prune", "0.25", "--prune-importance", "taylor", "--prune-round-to", "16",
         "--ft-epochs", "30"],
        "The speed recipe: 160 px inputs, then a quarter of the channels removed by Taylor importance with every "
        "channel count kept a multiple of 16 (a whole number of AVX-512 FP32 lanes; unrounded counts were slower "
        "than the unpruned file), each step recovered by distillation from its parent on unlabeled target crops "
        "for 30 epochs; deployed as FP32 (benchmarks/studies/officecaltech_caltech_t30/prune_probe/)."),
    "binary": Recipe(
        "binary", "student with binary pointwise convs (blocks 9-11)",
        ["--binary", "--binary-act-scale", "none", "--ft-epochs", "6"],
        "XNOR-Net binary weights and activations in the 1x1 convs of the last three inverted-residual blocks, "
        "signs only (as binary runtimes compute), recovered by self-distillation; float elsewhere."),
    "binary-int8": Recipe(
        "binary-int8", "1-bit pointwise convs (blocks 9-11) + INT8 elsewhere",
        ["--lowrank-ratio", "0.25", "--lowrank-layers", "linear+se", "--lowrank-whiten", "full", "--ft-guard",
         "--binary", "--binary-act-scale", "none", "--ft-epochs", "6", "--quantize", "ptsq"],
        "The 1mb recipe with the binary recipe's layers binarised: static INT8 everywhere else, the binary layers "
        "kept exact (float ops on ±1 values in PyTorch and ONNX Runtime)."),
})
