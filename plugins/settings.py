"""The one place that reads LiteDA's environment variables.

| variable | meaning | default |
|---|---|---|
| ``LITEDA_THREADS`` | torch / ONNX Runtime intra-op threads of a process | the library's own |
| ``LITEDA_CACHE`` | decoded-image cache folder | ``data/cache`` |
| ``LITEDA_SHARED`` | a folder with offline datasets and weights (``datasets/``, ``weights/``) | ``../shared`` |
| ``LITEDA_PLUGINS`` | comma-separated modules that register extra methods, techniques, artifacts | none |
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def threads() -> Optional[int]:
    """``LITEDA_THREADS`` as a positive int, or None (the runtime's default)."""
    v = os.environ.get("LITEDA_THREADS", "").strip()
    if not v:
        return None
    if not v.isdigit() or int(v) < 1:
        from .utils import fail

        fail(f"LITEDA_THREADS must be a positive integer, got '{v}'")
    return int(v)


def apply_threads() -> None:
    """Set torch's intra-op threads from ``LITEDA_THREADS`` (unset: torch's default)."""
    n = threads()
    if n:
        import torch

        torch.set_num_threads(n)


def torchrun_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) that torchrun gives each process it starts (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``); ``(0, 0, 1)`` in a process it did not start."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    values = [os.environ.get(n, d).strip() for n, d in zip(names, ("0", "0", "1"))]
    bad = next((n for n, v in zip(names, values) if not v.isdigit()), None)
    if bad is not None:
        from .utils import fail

        fail(f"{bad} must be a non-negative integer (torchrun sets it), got '{os.environ[bad]}'")
    return int(values[0]), int(values[1]), max(1, int(values[2]))


def cache_dir() -> str:
    return os.environ.get("LITEDA_CACHE", "data/cache")


def shared_dir() -> Path:
    return Path(os.environ.get("LITEDA_SHARED", "../shared"))


def plugin_modules() -> list[str]:
    return [m.strip() for m in os.environ.get("LITEDA_PLUGINS", "").split(",") if m.strip()]
