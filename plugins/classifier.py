"""tllib's ImageClassifier shape: backbone -> bottleneck -> head, with per-group learning rates."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """``forward`` returns ``(logits, features)`` in training mode and ``logits`` in eval mode (tllib)."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int = 256,
                 head: Optional[nn.Module] = None, finetune: bool = True):
        super().__init__()
        self.backbone, self.num_classes, self.finetune = backbone, num_classes, finetune
        if bottleneck_dim and bottleneck_dim > 0:
            self.bottleneck = nn.Sequential(
                nn.Linear(backbone.out_features, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU())
            self.features_dim = bottleneck_dim
        else:
            self.bottleneck, self.features_dim = nn.Identity(), backbone.out_features
        self.head = head if head is not None else nn.Linear(self.features_dim, num_classes)
        self.mean = getattr(backbone, "mean", None)
        self.std = getattr(backbone, "std", None)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features (what adaptation losses and t-SNE look at)."""
        return self.bottleneck(self.backbone(x))

    def forward(self, x: torch.Tensor):
        f = self.extract(x)
        y = self.head(f)
        return (y, f) if self.training else y

    def get_parameters(self, base_lr: float = 1.0) -> list[dict]:
        """The backbone learns at 0.1x when fine-tuning a pretrained model (tllib)."""
        return [
            {"params": self.backbone.parameters(), "lr": 0.1 * base_lr if self.finetune else base_lr},
            {"params": self.bottleneck.parameters(), "lr": base_lr},
            {"params": self.head.parameters(), "lr": base_lr},
        ]


# ----------------------------------------------------------------------------- build / save / load
def build_classifier(arch: str, num_classes: int, pretrained: bool | str = True, bottleneck_dim: int = 256,
                     **backbone_kw) -> ImageClassifier:
    from .backbones import create_backbone

    backbone = create_backbone(arch, pretrained=pretrained, **backbone_kw)
    return ImageClassifier(backbone, num_classes, bottleneck_dim, finetune=pretrained is not False)


def model_record(model: ImageClassifier, arch: str, classes: list[str], crop_size: int, bottleneck_dim: int,
                 resize_size: Optional[int] = None) -> dict:
    """What ``model.pt`` holds: enough to rebuild the module offline (weights_only-loadable), with its test
    transform (resize, then centre crop) when known."""
    return {"format": "liteda.classifier/1", "arch": arch, "num_classes": model.num_classes,
            "bottleneck_dim": bottleneck_dim, "classes": list(classes), "crop_size": crop_size,
            # MBV3 without its 1024-d pre-logits layer (--no-prelogits) is another structure to rebuild
            **({"prelogits": False} if isinstance(getattr(model.backbone, "prelogits", None), nn.Identity) else {}),
            **({"resize_size": resize_size} if resize_size else {}),
            "mean": list(model.mean or ()), "std": list(model.std or ()),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}  # loads without a GPU



def eval_resize(rec: dict, given: Optional[int] = None, legacy: Optional[int] = None) -> int:
    """A model's test-time resize (then centre crop): ``given`` (a flag), else the one recorded with it, else
    ``legacy`` (read off an old run's command), else 8/7 of its crop (256 for 224)."""
    return given or rec.get("resize_size") or legacy or rec["crop_size"] * 8 // 7

def read_record(path) -> dict:
    """``torch.load(weights_only=True)`` of a LiteDA file, with one-line errors (model.pt or compressed.pt)."""
    import os
    import warnings

    from .utils import fail

    if not os.path.isfile(path):
        fail(f"checkpoint '{path}' does not exist")
    try:
        with warnings.catch_warnings(action="ignore"):  # torch warns on per-channel quantized storages
            rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        fail(f"checkpoint '{path}' cannot be read: {str(e).splitlines()[0][:120]}")
    return rec if isinstance(rec, dict) else {}


def classifier_from_record(rec: dict, path) -> ImageClassifier:
    from .utils import fail

    if rec.get("format") != "liteda.classifier/1":
        fail(f"checkpoint '{path}' is not a LiteDA model file (expected model.pt from a run folder)")
    model = empty_classifier(rec)
    try:
        model.load_state_dict(rec["state_dict"])
    except RuntimeError as e:
        fail(f"checkpoint '{path}' does not fit arch '{rec['arch']}': {str(e).splitlines()[0][:120]}")
    return model


def empty_classifier(desc: dict) -> ImageClassifier:
    """The classifier a saved description names (arch, classes, bottleneck, pre-logits), weights not loaded."""
    kw = {"prelogits": False} if desc.get("prelogits") is False else {}
    return build_classifier(desc["arch"], desc["num_classes"], pretrained=False, bottleneck_dim=desc["bottleneck_dim"],
                            **kw)


def load_classifier(path) -> tuple[ImageClassifier, dict]:
    """Rebuild a saved LiteDA classifier (no download: the architecture is built empty, then loaded)."""
    rec = read_record(path)
    return classifier_from_record(rec, path), rec
