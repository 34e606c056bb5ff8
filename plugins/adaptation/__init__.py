"""Registry of adaptation methods: one line a method, ``name -> "module:Class"`` (imported lazily)."""
from __future__ import annotations

from ..registry import Registry
from .base import Method, Step

# Adaptation methods (and the distillation method, the engine's "kd") by name. One line a method.
METHODS = Registry("method", {
    "source_only": "liteda.adaptation.base:Method",
    "kd": "liteda.distill:Distill",
    "dann": "liteda.adaptation.dann:DANN",
    "cdan": "liteda.adaptation.cdan:CDAN",
    "cdan_e": "liteda.adaptation.cdan:CDANE",
    "mdd": "liteda.adaptation.mdd:MDD",
    "dan": "liteda.adaptation.dan:DAN",
    "jan": "liteda.adaptation.jan:JAN",
    "coral": "liteda.adaptation.coral:CORAL",
    "mcc": "liteda.adaptation.mcc:MCC",
    "iwan": "liteda.adaptation.iwan:IWAN",
    "shot_im": "liteda.adaptation.shot_im:SHOTIM",
})


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


__all__ = ["METHODS", "Method", "Step", "get_method"]
