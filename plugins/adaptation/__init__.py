"""Registry of adaptation methods: one line a method, ``name -> "module:Class"`` (imported lazily)."""
from __future__ import annotations

import importlib

from ..utils import fail
from .base import Method, Step

METHODS: dict[str, str] = {
    "source_only": "plugins.adaptation.base:Method",
    "kd": "plugins.distill:Distill",
    "dann": "plugins.adaptation.dann:DANN",
    "cdan": "plugins.adaptation.cdan:CDAN",
    "cdan_e": "plugins.adaptation.cdan:CDANE",
    "mdd": "plugins.adaptation.mdd:MDD",
    "dan": "plugins.adaptation.dan:DAN",
    "jan": "plugins.adaptation.jan:JAN",
    "coral": "plugins.adaptation.coral:CORAL",
    "mcc": "plugins.adaptation.mcc:MCC",
    "iwan": "plugins.adaptation.iwan:IWAN",
    "shot_im": "plugins.adaptation.shot_im:SHOTIM",
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        fail(f"unknown method '{name}'; choose from {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["METHODS", "Method", "Step", "get_method"]
