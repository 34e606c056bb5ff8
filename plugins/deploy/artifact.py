"""What a deploy artifact is: one runtime x one precision, made from a run's model and run on images.

A new artifact is one :class:`DeployArtifact` subclass (in ``runtimes/<runtime>.py``) plus one line in
:data:`liteda.deploy.ARTIFACTS`; ``liteda export``, ``liteda bench`` and the tests follow the registry.

    class OrtFP16(OnnxFile):                      # a file derived from the FP32 ONNX
        name, runtime, precision, file = "ort-fp16", "ort", "fp16", "model_fp16.onnx"
        def requires(self, ctx): return ("ort-fp32",)
        def write(self, ctx, path): ...            # make the file
        def load(self, ctx): ...                   # -> LoadedArtifact with run(x) -> logits

Every method takes the :class:`DeployContext`: the run's model and record, the images, the options and the
files exported so far.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]  # N x 3 x H x W float32 (normalised) -> N x classes logits
FLOAT, TORCH_INT8 = "float", "torch-int8"    # model kinds: float weights, or quantized by PyTorch (PTSQ/QAT)


@dataclass
class LoadedArtifact:
    """An artifact ready to run: what the benchmark times and scores (one table row)."""

    name: str
    runtime: str
    precision: str
    run: Optional[Runner]
    path: Optional[str] = None
    info: dict[str, Any] = field(default_factory=dict)  # threads, providers (table columns), anything else kept
    note: str = ""  # why the row could not run (kept in the table rather than silently dropped)


@dataclass
class DeployContext:
    """Everything an artifact is made from and run with."""

    inputs: Any                 # liteda.deploy.inputs.DeployInputs: model, record, images
    options: argparse.Namespace  # the export/bench flags (every artifact's own flags included)
    out: Path                   # the deploy folder
    files: dict[str, Path] = field(default_factory=dict)  # artifact name -> its file, once exported
    _sha: Optional[str] = None

    @property
    def model_kind(self) -> str:
        return TORCH_INT8 if self.inputs.torch_int8 else FLOAT

    @property
    def crop(self) -> int:
        return int(self.inputs.record.transform.crop)

    @property
    def source_sha(self) -> str:
        """sha256 of the model file: an artifact made from another model file is out of date."""
        if self._sha is None:
            from .onnx import file_sha256

            self._sha = file_sha256(self.inputs.model_file)
        return self._sha

    def file_of(self, name: str) -> Path:
        if name not in self.files:
            raise KeyError(f"artifact '{name}' has not been exported in this context")
        return self.files[name]


class DeployArtifact:
    """Base class. ``file``: the name of the file this artifact writes into the deploy folder (None: no fixed
    name; PyTorch eager and runtimes that read another artifact's file write nothing, TensorRT names its engines
    by content). ``model_kinds``: the kinds of model it can be made from (a model quantized by PyTorch has no
    float weights left)."""

    name: str = ""
    runtime: str = ""
    precision: str = ""
    file: Optional[str] = None
    model_kinds: tuple[str, ...] = (FLOAT,)
    description: str = ""
    slow: bool = False  # making or loading it compiles for a minute or more on a small CPU

    # ------------------------------------------------------------------ flags
    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        """Flags this artifact needs (added once per defining class, shared by its subclasses)."""

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> None:
        """One-line errors for bad values of this artifact's flags."""

    # ------------------------------------------------------------------ what it needs
    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        """Artifacts whose files this one is made from or runs (exported first)."""
        return ()

    def available(self, ctx: DeployContext) -> Optional[str]:
        """None when this artifact can be made and run here, else one line saying why not."""
        if ctx.model_kind not in self.model_kinds:
            have = (f"quantized by PyTorch ({ctx.inputs.torch_int8}), no float weights left"
                    if ctx.model_kind == TORCH_INT8 else "a float model")
            return f"{self.name} is made from a {' or '.join(self.model_kinds)} model; " \
                   f"'{ctx.inputs.model_file.name}' is {have}"
        from . import ARTIFACTS

        for dep in self.requires(ctx):
            why = ARTIFACTS.get(dep)().available(ctx)
            if why:
                return why
        return self.environment(ctx)

    def environment(self, ctx: DeployContext) -> Optional[str]:
        """None when this machine can run the artifact (GPU, package, CPU feature), else why not."""
        return None

    def recipe(self, ctx: DeployContext) -> dict:
        """The options that decide the file besides the model (a file made otherwise is out of date)."""
        return {}

    def full_recipe(self, ctx: DeployContext) -> dict:
        """``recipe`` with the recipes of the files it is made from, so a changed parent remakes it."""
        from . import ARTIFACTS

        out: dict[str, Any] = {"artifact": self.name, **self.recipe(ctx)}
        deps = {d: ARTIFACTS.get(d)().full_recipe(ctx) for d in self.requires(ctx) if ARTIFACTS.get(d).file}
        if deps:
            out["from"] = deps
        return out

    # ------------------------------------------------------------------ make and run
    def export(self, ctx: DeployContext) -> Optional[dict]:
        """Write (or reuse) this artifact's file; returns its ``export.json`` entry with ``path``. None: no file."""
        return None

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        raise NotImplementedError(f"{type(self).__name__}.load")

    def loader_code(self, ctx: DeployContext, file: str) -> Optional[str]:
        """Python lines that load ``file`` (a copy of :meth:`path`'s file, a name relative to the example script
        held in the variable ``FILE``) with this artifact's runtime and define ``run(x) -> logits`` on an
        N x 3 x H x W float32 array: the body of ``deploy/recommended_example.py``. None: no standalone example."""
        return None

    def path(self, ctx: DeployContext) -> Optional[Path]:
        """The file the benchmark measures (its size column): its own, else the file it runs."""
        if self.name in ctx.files:
            return ctx.files[self.name]
        deps = [d for d in self.requires(ctx) if d in ctx.files]
        return ctx.files[deps[-1]] if deps else None


class StampedFile(DeployArtifact):
    """A file in the deploy folder, reused while the model file and the recipe are the ones that made it.

    The stamp (``source_sha256``, ``export_recipe``, the task) is written by :meth:`write_stamp`: beside the file
    as ``<file>.json`` unless the format carries metadata of its own (ONNX, OpenVINO IR)."""

    def write(self, ctx: DeployContext, path: Path) -> dict:
        """Make the file at ``path``; returns what to record about it."""
        raise NotImplementedError(f"{type(self).__name__}.write")

    def read_stamp(self, path: Path) -> dict:
        from ..utils import read_json

        side = path.with_name(path.name + ".json")
        return read_json(side) if side.is_file() else {}

    def write_stamp(self, path: Path, meta: dict) -> None:
        from ..utils import write_json

        write_json(path.with_name(path.name + ".json"), {**self.read_stamp(path), **meta})

    def described(self, path: Path) -> dict:
        """What ``export.json`` says about the file besides its path and size."""
        return {}

    def export(self, ctx: DeployContext) -> dict:
        path = ctx.out / self.file
        recipe = self.full_recipe(ctx)
        fresh = ctx.options.force or not self._up_to_date(path, ctx.source_sha, recipe)
        info = self.write(ctx, path) if fresh else {}
        if fresh:
            self.write_stamp(path, {"source_sha256": ctx.source_sha, "export_recipe": recipe, "task": ctx.inputs.task})
        return {**info, "path": str(path), "reused": not fresh, "size_mb": file_size_mb(path), **self.described(path)}

    def _up_to_date(self, path: Path, sha: str, recipe: dict) -> bool:
        if not all(f.is_file() for f in companion_files(path)):
            return False
        meta = self.read_stamp(path)
        return meta.get("source_sha256") == sha and meta.get("export_recipe") == recipe


class OnnxFile(StampedFile):
    """An ONNX file; its stamp is in the file's metadata."""

    def read_stamp(self, path: Path) -> dict:
        from .onnx import read_metadata

        return read_metadata(path)

    def write_stamp(self, path: Path, meta: dict) -> None:
        from .onnx import stamp

        stamp(path, meta)

    def described(self, path: Path) -> dict:
        meta = self.read_stamp(path)
        before = meta.get("compacted_from_mb")
        recipe = meta.get(f"{self.precision}_recipe")
        return {**({"size_mb_before_compaction": before} if before else {}),
                **({"recipe": recipe} if recipe is not None else {})}


def companion_files(path: str | Path) -> list[Path]:
    """The files one artifact is made of: an OpenVINO IR is its ``.xml`` (graph) and ``.bin`` (weights)."""
    path = Path(path)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def file_size_mb(path: str | Path) -> float:
    """MB (10^6 bytes) of an artifact's file with its companions."""
    return sum(f.stat().st_size for f in companion_files(path) if f.is_file()) / 1e6
