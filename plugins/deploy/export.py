"""Write a run's deploy artifacts into its deploy folder, the files they are made from first.

Each file artifact decides itself whether its file is up to date (ONNX files: the model file's sha256 and the
export recipe written into the file); ``export.json`` lists what was written or reused. ``record.json`` of the
deploy folder (kind ``bench``) is written by the benchmark, last.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Collection, Optional

from ..record import StageRecord, relative, write_record
from ..utils import fail, write_json
from .artifact import DeployContext


def make_context(args: argparse.Namespace) -> DeployContext:
    """The run's inputs (model, record, images) and the flags, writing into ``--out`` or ``<run>/deploy``."""
    from .inputs import load_inputs

    inp = load_inputs(args.run, args.calib_size, args.seed, args.cache_dir, getattr(args, "max_images", None),
                      getattr(args, "agreement_size", 0))
    return DeployContext(inp, args, Path(args.out) if args.out else inp.run_dir / "deploy")


def with_requirements(names: list[str], ctx: DeployContext) -> list[str]:
    """``names`` and every artifact they are made from, each after what it requires."""
    from . import ARTIFACTS

    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            fail(f"deploy artifacts require each other in a cycle: {' -> '.join((*path, name))}")
        for dep in ARTIFACTS.get(name)().requires(ctx):
            visit(dep, (*path, name))
        order.append(name)

    for n in names:
        visit(n, ())
    return order


def export_artifacts(ctx: DeployContext, names: list[str], strict: Collection[str] = ()) -> dict:
    """Export ``names`` (and what they require) into ``ctx.out``; fills ``ctx.files``; writes ``export.json``.

    An artifact that cannot be made here is skipped (``skipped``: name -> why), or is a one-line error when it is
    in ``strict`` (asked for explicitly)."""
    from . import ARTIFACTS

    ctx.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"run": str(ctx.inputs.run_dir), "checkpoint": str(ctx.inputs.model_file),
                    "source_sha256": ctx.source_sha, "artifacts": {}, "skipped": {}}
    for name in with_requirements(names, ctx):
        art = ARTIFACTS.get(name)()
        why = art.available(ctx)
        if why:
            if name in strict:
                fail(f"{name} ({art.description or art.runtime}) cannot be made here: {why}")
            if name in names:
                report["skipped"][name] = why
            continue
        info = art.export(ctx)
        if info is not None:
            ctx.files[name] = Path(info["path"])
            report["artifacts"][name] = info
    write_json(ctx.out / "export.json", report)
    return report


def write_deploy_record(ctx: DeployContext, results: Path, extra: Optional[dict[str, str]] = None) -> Path:
    """``<deploy>/record.json``: the parent's identity (name, label, seed, dataset, transform) and the files here
    (``extra``: more roles -> files relative to the deploy folder, e.g. the recommended artifact)."""
    parent: StageRecord = ctx.inputs.record
    run_dir, out = ctx.inputs.run_dir, ctx.out
    rec = StageRecord(
        kind="bench", name=parent.name, label=parent.label, seed=parent.seed,
        dataset=dataclasses.replace(parent.dataset, splits=relative(parent.splits_dir(run_dir), out)),
        transform=parent.transform, arch=parent.arch,
        artifacts={**{name: relative(path, out) for name, path in ctx.files.items() if Path(path).is_file()},
                   **(extra or {})},
        parents={"model": relative(run_dir, out)}, results=relative(results, out), weights=parent.weights)
    return write_record(out, rec)

