"""The plugin hook: importing this module registers LiteDA's backbones into tllib's model lookup.

tllib's example scripts resolve ``-a NAME`` with ``utils.get_model``: a lower-case callable in
``tllib.vision.models`` is called as ``NAME(pretrained=not args.scratch)``, any other name goes to timm. After

    import liteda.interop.tllib

``tllib.vision.models`` also holds LiteDA's backbones (``mobilenet_v3_small``, ``mobilenet_v3_large``; every
name of ``liteda.backbones.list_backbones()``), so ``dann.py -a mobilenet_v3_small`` builds LiteDA's
MobileNetV3 (pre-logits layer included) without any edit of tllib's files. ``python -m
liteda.interop.tllib_example`` runs an example script that way (docs/tllib.md).

Weights: ``pretrained=True`` means torchvision's ImageNet weights by name (downloaded, hash-checked); on an
offline machine give a local state_dict per arch, ``register_backbones({"mobilenet_v3_small": PATH})`` or the
wrapper's ``--weights mobilenet_v3_small=PATH``. ``--scratch`` (``pretrained=False``) loads nothing.

tllib's backbones return feature maps that its ``Classifier`` pools (``AdaptiveAvgPool2d`` + ``Flatten``);
LiteDA's return pooled vectors, so the registered builders present them as ``N x D x 1 x 1`` maps (pooling a
1 x 1 map is the identity). The module's parameters and their names are LiteDA's own, so a checkpoint tllib's
scripts save loads back into LiteDA (``liteda.interop.tllib_checkpoint``).
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional

import torch
from torch import nn

from ..backbones import create_backbone, list_backbones
from .tllib_compat import import_tllib

tllib = import_tllib()  # ImportError with how to install tllib when it is missing

import tllib.vision.models as tllib_models  # noqa: E402  (after the compatibility shims)

# arch -> local state_dict used when tllib asks for pretrained weights (offline machines)
WEIGHTS: dict[str, str] = {}


def as_feature_map(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: pooled ``N x D`` features as the ``N x D x 1 x 1`` map tllib's classifiers pool."""
    return output[:, :, None, None] if output.dim() == 2 else output


def tllib_builder(arch: str) -> Callable[..., nn.Module]:
    """``builder(pretrained=True, **kw)`` in tllib's model-function shape, building LiteDA's ``arch``."""
    def build(pretrained: bool = True, **kw) -> nn.Module:
        weights = WEIGHTS.get(arch) if pretrained else None
        backbone = create_backbone(arch, pretrained=weights or bool(pretrained), **kw)
        backbone.register_forward_hook(as_feature_map)
        return backbone

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"LiteDA's {arch} backbone for tllib (out_features = pooled feature width)."
    return build


def register_backbones(weights: Optional[Mapping[str, str | os.PathLike]] = None,
                       names: Optional[list[str]] = None) -> list[str]:
    """Put LiteDA's backbones (all, or ``names``) into ``tllib.vision.models``; ``weights`` maps an arch to a
    local state_dict for ``pretrained=True``. Returns the names registered. Idempotent."""
    from ..utils import fail

    for arch, path in (weights or {}).items():
        if not os.path.isfile(path):
            fail(f"weights for '{arch}': '{path}' does not exist")
        WEIGHTS[arch] = str(path)
    names = list(names or list_backbones())
    for arch in names:
        if arch not in list_backbones():
            fail(f"'{arch}' is not a LiteDA backbone ({', '.join(list_backbones())})")
        setattr(tllib_models, arch, tllib_builder(arch))
    return names


REGISTERED = register_backbones()
