"""The contract of a compression technique: one class in the technique's own file plus one registry line.

The CLI builds its flags from :meth:`Technique.add_args`, checks them with :meth:`Technique.check`, applies every
:meth:`Technique.active` technique in registry order through the pipeline context (:class:`liteda.compress.
pipeline.Pipeline`), and :func:`liteda.compress.model_file.rebuild` replays the recorded ops through
:meth:`Technique.rebuild` when a ``compressed.pt`` is loaded. Nothing else names a technique.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from ..record import Transform
    from .pipeline import Pipeline


class Technique:
    """Subclass with class attributes and staticmethods (a technique holds no state; the pipeline does)."""

    name: str = ""
    # flags that turn the technique on for a tiny (32 px, 3-class) model and run quickly: the parametrised tests
    # apply, save and reload every registered technique with them
    test_args: tuple[str, ...] = ()
    # its rebuild needs the float structure complete, with the recorded tensor shapes (quantization traces it)
    after_shapes: bool = False

    @staticmethod
    def add_args(group: argparse._ArgumentGroup) -> None:
        """The technique's flags, defaults that leave it off."""

    @staticmethod
    def active(args: argparse.Namespace) -> bool:
        raise NotImplementedError

    @staticmethod
    def check(args: argparse.Namespace) -> None:
        """One-line errors (``liteda.utils.fail``) for bad flags, before anything is loaded. Runs for every
        registered technique, active or not."""

    @staticmethod
    def check_input(args: argparse.Namespace, transform: Transform) -> None:
        """Errors that need the input model's transform (e.g. a size above its crop), before any measurement."""

    @staticmethod
    def apply(ctx: Pipeline, args: argparse.Namespace) -> None:
        """Change ``ctx.student``, append the op dict that :meth:`rebuild` replays to ``ctx.ops``, log the stage
        (``ctx.log``) with its recovery fine-tune."""
        raise NotImplementedError

    @staticmethod
    def rebuild(model: nn.Module, op: dict, base: dict) -> nn.Module:
        """Re-apply the recorded structural change to an empty model (weights are loaded afterwards). ``base``:
        the classifier's description in the file (arch, classes, crop_size, ...). Default: no structural change
        beyond tensor shapes, which the file records for every technique."""
        return model
