"""Registry of adaptation methods: one line a method, ``name -> "module:Class"`` (imported lazily)."""
from __future__ import annotations

import importlib

from ..utils import fail
from .base import Method, Step

METHODS: dict[str, str] = {
    "source_only": "plugins.adaptation.base:Method",
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        fail(f"unknown method '{name}'; choose from {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["METHODS", "Method", "Step", "get_method"]
