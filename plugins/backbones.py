"""Backbones with tllib's contract: ``forward(x) -> pooled features`` and an ``out_features`` attribute.

A small timm-like registry: ``create_backbone("mobilenet_v3_small", pretrained=True | False | "path.pth")``.
torchvision models come with their ImageNet weights by name; any other name is looked up in timm. A local
state_dict (``--pretrained PATH``) is the offline path: it must fit the unmodified model (strict).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch
from torch import nn

from .datasets import IMAGENET_MEAN, IMAGENET_STD
from .utils import fail

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    def deco(fn):
        _BUILDERS[name] = fn
        return fn

    return deco


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state_dict or a dict holding one under 'state_dict'/'model' (weights_only, never pickle code)."""
    if not os.path.isfile(path):
        fail(f"weights file '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt/foreign files are user errors
        fail(f"weights file '{path}' cannot be read as a torch state_dict: {str(e).splitlines()[0][:150]}")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        fail(f"weights file '{path}' is not a state_dict of tensors")
    return obj


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> Optional[str]:
    """Why ``state`` does not load strictly into ``model`` (the first missing / unexpected key or shape), or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if not (missing or unexpected or shape):
        return None
    return (f"{len(missing)} missing keys (e.g. {missing[0]})" if missing else
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})" if unexpected else
            f"shape mismatch at {shape[0]}: {tuple(state[shape[0]].shape)} vs {tuple(own[shape[0]].shape)}")


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, arch: str) -> None:
    what = state_mismatch(model, state)
    if what:
        fail(f"weights file '{path}' does not fit arch '{arch}': {what}")
    model.load_state_dict(state, strict=True)


class MobileNetV3Backbone(nn.Module):
    """torchvision MobileNetV3 without its last Linear: features -> pool -> (pre-logits Linear + Hardswish).

    The pre-logits layer is kept by default because it carries ImageNet knowledge; ``prelogits=False`` gives
    the 576/960-d pooled features (smaller deployables).
    """

    def __init__(self, model: nn.Module, prelogits: bool = True):
        super().__init__()
        self.features, self.avgpool = model.features, model.avgpool
        self.prelogits = nn.Sequential(model.classifier[0], model.classifier[1]) if prelogits else nn.Identity()
        self.out_features = model.classifier[0].out_features if prelogits else model.classifier[0].in_features
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

        self.frozen_stages = 0

    def freeze_stages(self, k: int) -> None:
        """Fix the first ``k`` blocks (weights and BN statistics). Backward then stops before the
        high-resolution blocks, which dominate training cost on a CPU (measured in benchmarks/)."""
        if not 0 <= k <= len(self.features):
            raise ValueError(f"freeze stages must be in [0, {len(self.features)}], got {k}")
        self.frozen_stages = k
        for p in self.features[:k].parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features[: self.frozen_stages].eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelogits(torch.flatten(self.avgpool(self.features(x)), 1))


def _torchvision_mbv3(name: str, pretrained: bool | str, prelogits: bool = True) -> nn.Module:
    import torchvision.models as tvm

    model = getattr(tvm, name)(weights=None)
    if pretrained is True:
        # torchvision's own loader unpickles its hub cache with weights_only=False: a file planted there would
        # run code. The same file through torch.hub with weights_only=True and its published hash cannot.
        weights = tvm.get_model_weights(name).DEFAULT
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True,
                                                       weights_only=True)
        except Exception as e:  # noqa: BLE001 - offline machines land here
            fail(f"could not load torchvision weights for {name} ({str(e).splitlines()[0][:100]}); pass "
                 f"--pretrained PATH to a local state_dict or --scratch")
        load_strict(model, state, weights.url, name)
    if isinstance(pretrained, (str, os.PathLike)):
        load_strict(model, load_state_dict_file(pretrained), pretrained, name)
    return MobileNetV3Backbone(model, prelogits)


@register_backbone("mobilenet_v3_small")
def mobilenet_v3_small(pretrained: bool | str = True, **kw) -> nn.Module:
    return _torchvision_mbv3("mobilenet_v3_small", pretrained, **kw)


@register_backbone("mobilenet_v3_large")
def mobilenet_v3_large(pretrained: bool | str = True, **kw) -> nn.Module:
    return _torchvision_mbv3("mobilenet_v3_large", pretrained, **kw)


class TimmBackbone(nn.Module):
    """Any timm model with its classifier removed (``num_classes=0`` gives pooled features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.out_features = model.num_features
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))

        self.frozen_stages = 0

    def stages(self) -> list[nn.Module]:
        """The stem then each block stage, input to output (EfficientNet/MobileNet-style timm models), so that
        ``freeze_stages(k)`` means what it means for MobileNetV3: the first k high-resolution stages."""
        m = self.model
        if not (hasattr(m, "conv_stem") and hasattr(m, "blocks")):
            raise ValueError(f"{type(m).__name__} has no conv_stem/blocks stages")
        return [nn.ModuleList([m.conv_stem, m.bn1]), *m.blocks]

    def freeze_stages(self, k: int) -> None:
        stages = self.stages()
        if not 0 <= k <= len(stages):
            raise ValueError(f"freeze stages must be in [0, {len(stages)}], got {k}")
        self.frozen_stages = k
        for stage in stages[:k]:
            for p in stage.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_stages:
            for stage in self.stages()[: self.frozen_stages]:
                stage.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _timm(name: str, pretrained: bool | str) -> nn.Module:
    import timm

    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        fail(f"unknown arch '{name}' (-a): not a LiteDA backbone ({', '.join(_BUILDERS)}) nor a timm model")
    try:
        model = timm.create_model(name, pretrained=pretrained is True)
    except Exception as e:  # noqa: BLE001
        fail(f"could not create timm model {name} ({str(e)[:80]}); pass --pretrained PATH or --scratch")
    if isinstance(pretrained, (str, os.PathLike)):
        load_strict(model, load_state_dict_file(pretrained), pretrained, name)
    model.reset_classifier(0)
    return TimmBackbone(model)


def create_backbone(name: str, pretrained: bool | str = True, **kw) -> nn.Module:
    """``pretrained``: True (weights by name, downloads), False (scratch) or a local state_dict path."""
    if name in _BUILDERS:
        return _BUILDERS[name](pretrained=pretrained, **kw)
    return _timm(name, pretrained)


def list_backbones() -> list[str]:
    return sorted(_BUILDERS)
