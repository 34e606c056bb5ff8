"""The input of a compression stage: a finished run folder, read only through its record.

A training run (source_only, adapt, oracle, distill) gives its classifier (``model`` artifact); a compression
run gives its float ``compressed`` artifact, so a compression can continue an earlier one (e.g. QAT of a float
recipe, or a lower resolution after an activation swap) without redoing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from ..record import FILENAME, StageRecord, read_record
from ..utils import fail

TRAINED_KINDS = ("source_only", "adapt", "oracle", "distill")


@dataclass
class Parent:
    run: Path
    record: StageRecord
    file: Path          # the model file compressed (model.pt or compressed.pt)
    model: nn.Module
    base: dict          # the classifier's description (arch, num_classes, classes, crop_size, mean, std, ...)
    ops: list[dict]     # techniques already applied (a compression parent)


def read_run(run: str | Path, flag: str) -> StageRecord:
    """The record of the run folder given as ``flag`` (one-line error naming the flag when it has none)."""
    if not (Path(run) / FILENAME).is_file():
        fail(f"{flag} '{run}' has no {FILENAME}: not a finished LiteDA run folder")
    return read_record(run)


def load_parent(run: str | Path, flag: str = "--run") -> Parent:
    from ..classifier import load_classifier
    from .model_file import compressed_from_record, is_quantized, read_compressed

    run = Path(run)
    rec = read_run(run, flag)
    if rec.kind in TRAINED_KINDS:
        file = rec.path(run, "model")
        model, base = load_classifier(file)
        ops: list[dict] = []
    elif rec.kind == "compress":
        file = rec.path(run, "compressed")
        crec = read_compressed(file)
        if is_quantized(crec):
            fail(f"{flag} '{run}' is already quantized; continue from a float compression run")
        model, base, ops = compressed_from_record(crec, file), crec["base"], list(crec["ops"])
    else:
        fail(f"{flag} '{run}' is a '{rec.kind}' run; give a training run ({', '.join(TRAINED_KINDS)}) or a float "
             "compression run")
    base = {k: v for k, v in base.items() if k != "state_dict"}
    if not str(base.get("arch", "")).startswith("mobilenet_v3"):
        fail(f"{flag} '{run}' holds a '{base.get('arch')}' model; compression supports MobileNetV3")
    return Parent(run, rec, file, model, base, ops)


def load_ft_teacher(run: Optional[str], num_classes: int, student: nn.Module) -> tuple[Optional[nn.Module], dict]:
    """The fine-tunes' teacher: the model of another run behind its own input normalisation, or None (the
    uncompressed student, i.e. self-distillation)."""
    if not run:
        return None, {"run": None, "ckpt": None, "what": "the uncompressed student (self-distillation)"}
    from ..distill.teachers import load_teachers

    rec = read_run(run, "--ft-teacher-run")
    if rec.kind not in TRAINED_KINDS:
        fail(f"--ft-teacher-run '{run}' is a '{rec.kind}' run; give a training run ({', '.join(TRAINED_KINDS)})")
    ensemble, infos = load_teachers([str(rec.path(run, "model"))], num_classes, student.mean, student.std,
                                    flag="--ft-teacher-run")
    return ensemble, {"run": str(run), **infos[0]}
