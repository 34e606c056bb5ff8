"""Registries: name -> ``"module:attribute"``, imported on first use (timm's ``create_model`` idea).

Every extensible thing in LiteDA is one file plus one line in its registry: adaptation methods
(:data:`liteda.adaptation.METHODS`), compression techniques and recipes (:mod:`liteda.compress.registry`) and
deploy artifacts (:data:`liteda.deploy.ARTIFACTS`). The CLI, the Makefile grid, the report and the tests read
the registries, never a hand-kept list.

Third-party entries need no edit of LiteDA's files: a module named in ``LITEDA_PLUGINS`` (comma-separated) or
exposed under the ``liteda.plugins`` entry-point group is imported before the first lookup and calls
:meth:`Registry.register`.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator, Union

from .utils import fail

_plugins_loaded = False


def load_plugins() -> None:
    """Import the plugin modules once (``LITEDA_PLUGINS`` and the ``liteda.plugins`` entry points)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    from .settings import plugin_modules

    for name in plugin_modules():
        try:
            importlib.import_module(name)
        except ImportError as e:
            fail(f"LITEDA_PLUGINS: cannot import '{name}': {e}")
    for ep in entry_points(group="liteda.plugins"):
        ep.load()


class Registry:
    """An ordered mapping of names to lazily imported objects. Order is meaningful where a registry says so
    (compression techniques are applied in registry order)."""

    def __init__(self, kind: str, entries: dict[str, Union[str, Any]]):
        self.kind = kind
        self._entries: dict[str, Union[str, Any]] = dict(entries)

    def register(self, name: str, target: Union[str, Any], overwrite: bool = False) -> None:
        """Add ``name``: an object, or a ``"module:attribute"`` string imported when first asked for."""
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        load_plugins()
        return list(self._entries)

    def get(self, name: str) -> Any:
        load_plugins()
        if name not in self._entries:
            fail(f"unknown {self.kind} '{name}'; choose from {', '.join(self._entries)}")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
