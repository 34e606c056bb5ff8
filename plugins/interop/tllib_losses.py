"""tllib's own loss modules behind LiteDA's methods: ``liteda adapt -m dann --tllib-losses``.

With ``--tllib-losses`` the methods below build tllib's module in place of LiteDA's and the engine trains as
usual (data, forward, source cross-entropy, optimiser, checkpoints are LiteDA's); tllib must be importable
(``liteda.interop.tllib_compat``). ``tests/test_tllib_interop.py`` shows both give the same values and gradients
on the same inputs and weights.

| method | tllib module |
|---|---|
| dann | ``tllib.alignment.dann.DomainAdversarialLoss`` + ``tllib.modules.domain_discriminator.DomainDiscriminator`` |
| cdan, cdan_e | ``tllib.alignment.cdan.ConditionalDomainAdversarialLoss`` + the same discriminator |
| mcc | ``tllib.self_training.mcc.MinimumClassConfusionLoss`` |
| mdd | ``tllib.alignment.mdd.ClassificationMarginDisparityDiscrepancy`` |
| dan | ``tllib.alignment.dan.MultipleKernelMaximumMeanDiscrepancy`` + ``tllib.modules.kernels.GaussianKernel`` |
| jan | ``tllib.alignment.jan.JointMultipleKernelMaximumMeanDiscrepancy`` + the same kernels |

Gradient reversal is tllib's ``WarmStartGradientReverseLayer`` on the method's schedule (``--grl-max-iters``).
Three adapters keep LiteDA's guarantees around tllib's modules, never changing what they compute: the reversal's
step counter and CDAN's random projections are kept as buffers (tllib keeps a Python int and plain tensors, which
a checkpoint would not save, so ``--resume`` would restart the ramp and redraw the map), and the losses run in
float32 with autocast off (tllib's ``F.binary_cross_entropy`` on probabilities is refused under autocast).
tllib's MMD estimates add the constant ``2 / (B - 1)`` to LiteDA's (the same gradients).
"""
from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from ..adaptation.grl import warm_start_coeff
from ..utils import fail


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tllib-losses", action="store_true",
                        help="use tllib's own loss modules instead of LiteDA's (tllib must be installed)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "tllib_losses", False))


def _tllib():
    from .tllib_compat import import_tllib

    try:
        return import_tllib()
    except ImportError as e:
        fail(f"--tllib-losses: {e}")


def _as_float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float()
    if isinstance(x, (tuple, list)):
        return type(x)(_as_float(v) for v in x)
    return x


def _device(args: tuple) -> torch.device:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
        if isinstance(a, (tuple, list)) and a:
            return _device(tuple(a))
    return torch.device("cpu")


class Float32(nn.Module):
    """Runs a loss module in float32 with autocast off; its attributes read through (``domain_discriminator_accuracy``,
    ``temperature``, ``grl``, ...)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, *args, **kwargs):
        with torch.autocast(device_type=_device(args).type, enabled=False):
            return self.loss(*_as_float(args), **_as_float(kwargs))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            loss = self.__dict__.get("_modules", {}).get("loss")
            if loss is None:
                raise
            return getattr(loss, name)


class SyncedGradientReverseLayer(nn.Module):
    """tllib's ``WarmStartGradientReverseLayer`` with its step counter kept here as a buffer (saved and resumed
    with the method), advanced once per training forward as tllib's ``auto_step`` does."""

    def __init__(self, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: int = 1000):
        super().__init__()
        from tllib.modules.grl import WarmStartGradientReverseLayer

        self.layer = WarmStartGradientReverseLayer(alpha=alpha, lo=lo, hi=hi, max_iters=max_iters, auto_step=False)
        self.register_buffer("iter_num", torch.zeros((), dtype=torch.long))

    @property
    def coeff(self) -> float:
        g = self.layer
        return warm_start_coeff(int(self.iter_num), g.alpha, g.lo, g.hi, g.max_iters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer.iter_num = int(self.iter_num)
        y = self.layer(x)
        if self.training:
            self.iter_num += 1
        return y


# ----------------------------------------------------------------------------- one factory per method
def gradient_reverse(hi: float, max_iters: int) -> SyncedGradientReverseLayer:
    _tllib()
    return SyncedGradientReverseLayer(alpha=1.0, lo=0.0, hi=hi, max_iters=max_iters)


def domain_discriminator(in_feature: int, hidden_size: int) -> nn.Module:
    _tllib()
    from tllib.modules.domain_discriminator import DomainDiscriminator

    return DomainDiscriminator(in_feature=in_feature, hidden_size=hidden_size)


def domain_adversarial(features_dim: int, hidden_size: int, max_iters: int) -> Float32:
    """DANN: tllib's ``DomainAdversarialLoss(DomainDiscriminator(features_dim, hidden_size))``."""
    _tllib()
    from tllib.alignment.dann import DomainAdversarialLoss

    disc = domain_discriminator(features_dim, hidden_size)
    return Float32(DomainAdversarialLoss(disc, grl=gradient_reverse(1.0, max_iters)))


def conditional_domain_adversarial(in_feature: int, hidden_size: int, entropy: bool, randomized: bool,
                                   num_classes: int, features_dim: int, randomized_dim: int,
                                   max_iters: int) -> Float32:
    """CDAN / CDAN+E: tllib's ``ConditionalDomainAdversarialLoss``; its random projections become buffers."""
    _tllib()
    from tllib.alignment.cdan import ConditionalDomainAdversarialLoss

    disc = domain_discriminator(in_feature, hidden_size)
    loss = ConditionalDomainAdversarialLoss(disc, entropy_conditioning=entropy, randomized=randomized,
                                            num_classes=num_classes, features_dim=features_dim,
                                            randomized_dim=randomized_dim)
    loss.grl = gradient_reverse(1.0, max_iters)  # tllib's CDAN builds its own with max_iters=1000, no argument
    if randomized:
        for name in ("Rf", "Rg"):
            value = getattr(loss.map, name)
            delattr(loss.map, name)
            loss.map.register_buffer(name, value)
    return Float32(loss)


def minimum_class_confusion(temperature: float) -> Float32:
    _tllib()
    from tllib.self_training.mcc import MinimumClassConfusionLoss

    return Float32(MinimumClassConfusionLoss(temperature))


def margin_disparity(margin: float) -> Float32:
    _tllib()
    from tllib.alignment.mdd import ClassificationMarginDisparityDiscrepancy

    return Float32(ClassificationMarginDisparityDiscrepancy(margin))


def _kernels(lo: int = -3, hi: int = 1) -> list[nn.Module]:
    from tllib.modules.kernels import GaussianKernel

    return [GaussianKernel(alpha=2.0 ** k) for k in range(lo, hi + 1)]


def multiple_kernel_mmd(linear: bool) -> Float32:
    """DAN: tllib's MK-MMD with its Gaussian family ``alpha = 2^k, k = -3..1``."""
    _tllib()
    from tllib.alignment.dan import MultipleKernelMaximumMeanDiscrepancy

    return Float32(MultipleKernelMaximumMeanDiscrepancy(_kernels(), linear=linear))


def joint_multiple_kernel_mmd(linear: bool, softmax_sigma: float) -> Float32:
    """JAN: tllib's JMMD over (features: the Gaussian family, softmax predictions: one fixed Gaussian)."""
    _tllib()
    from tllib.alignment.jan import JointMultipleKernelMaximumMeanDiscrepancy
    from tllib.modules.kernels import GaussianKernel

    kernels = (_kernels(), [GaussianKernel(sigma=softmax_sigma, track_running_stats=False)])
    return Float32(JointMultipleKernelMaximumMeanDiscrepancy(kernels, linear=linear))


def mmd_offset(batch_size: int) -> float:
    """What tllib's MMD estimates add to LiteDA's: ``2 / (B - 1)``."""
    return 2.0 / float(batch_size - 1)


def discriminator_state_for_tllib(state: dict[str, torch.Tensor], layers: int = 7) -> dict[str, torch.Tensor]:
    """LiteDA ``DomainDiscriminator`` weights under tllib's names: tllib nests its last Linear with the Sigmoid
    (``6.0.weight``), LiteDA does not (``6.weight``)."""
    last = f"{layers - 1}."
    return {(last + "0." + k[len(last):] if k.startswith(last) else k): v for k, v in state.items()}
