"""The typed record every stage writes into its run folder (``record.json``), read forwards.

A stage (train, adapt, oracle, distill, compress, bench) knows its inputs only through its parents' records: the
dataset and the image lists it was trained on (each run folder holds a copy of its ``splits/``), the test
transform its model expects and the files it produced. The report reads records too. Nothing walks back through
older result files or parses a saved command line.

    run folder/
      record.json     this record (what the run is)
      results.json    its measurements (what the run scored); ``record.results`` names it
      splits/         the image lists the run used
      <artifacts>     model.pt, compressed.pt, model_int8.onnx, ... (``record.artifacts``)

Paths inside a record are relative to its run folder, so a runs tree can be moved or copied whole.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .utils import fail, read_json, write_json

SCHEMA = "liteda.record/1"
FILENAME = "record.json"
# What a stage is. The train kinds share one engine (runner.py); compress and bench read a parent's model.
KINDS = ("source_only", "adapt", "oracle", "distill", "compress", "bench")


@dataclass
class DatasetRef:
    """Which data a run used: ``splits`` holds ``<letter>_{train,test}.txt`` (relative to the run folder)."""

    name: str
    root: str
    source: str  # domain letters (A, W, ...; the folder name for Custom datasets)
    target: str
    classes: list[str]
    splits: str = "splits"
    protocol: str = "heldout"

    @property
    def task(self) -> str:
        return f"{self.source}2{self.target}"


@dataclass
class Transform:
    """The test transform a model expects: resize (square), centre crop, normalisation."""

    resize: int
    crop: int
    mean: list[float]
    std: list[float]


@dataclass
class StageRecord:
    kind: str                       # one of KINDS
    name: str                       # the run's name: its folder and its table row key (kd, mcc, 1mb)
    label: str                      # the row label in tables and the report
    seed: int
    dataset: DatasetRef
    transform: Transform
    arch: str = "mobilenet_v3_small"
    artifacts: dict[str, str] = field(default_factory=dict)  # role -> file (model, compressed, int8, ...)
    parents: dict[str, str] = field(default_factory=dict)    # role -> run folder (teacher, student, init)
    results: str = "results.json"
    weights: str = ""               # which pretrained weights the run started from (stand-ins say so)
    schema: str = SCHEMA

    @property
    def task(self) -> str:
        return self.dataset.task

    # ------------------------------------------------------------------ paths
    def path(self, run_dir: str | os.PathLike, role: str) -> Path:
        """The artifact ``role`` as a path (one-line error when the record has none or the file is gone)."""
        if role not in self.artifacts:
            fail(f"'{Path(run_dir) / FILENAME}' has no '{role}' artifact (it has: {', '.join(self.artifacts) or 'none'})")
        p = Path(run_dir) / self.artifacts[role]
        if not p.is_file():
            fail(f"'{p}' (the '{role}' artifact of '{run_dir}') does not exist")
        return p

    def parent(self, run_dir: str | os.PathLike, role: str) -> Path:
        if role not in self.parents:
            fail(f"'{Path(run_dir) / FILENAME}' has no '{role}' parent")
        return Path(os.path.normpath(Path(run_dir) / self.parents[role]))

    def splits_dir(self, run_dir: str | os.PathLike) -> Path:
        return Path(run_dir) / self.dataset.splits

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def relative(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """``path`` as the record stores it: relative to the run folder."""
    return os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())


def write_record(run_dir: str | os.PathLike, rec: StageRecord) -> Path:
    if rec.kind not in KINDS:
        raise ValueError(f"unknown stage kind '{rec.kind}'")
    path = Path(run_dir) / FILENAME
    write_json(path, rec.to_dict())
    return path


def from_dict(d: dict, where: str = "record") -> StageRecord:
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        fail(f"'{where}' is not a LiteDA stage record ({SCHEMA})")
    try:
        d = dict(d)
        d["dataset"] = DatasetRef(**d["dataset"])
        d["transform"] = Transform(**d["transform"])
        return StageRecord(**d)
    except (KeyError, TypeError) as e:
        fail(f"'{where}' is not a valid stage record: {e}")
    raise AssertionError


def read_record(run_dir: str | os.PathLike) -> StageRecord:
    """The record of a run folder; a one-line error when it has none (the stage did not finish)."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        fail(f"'{run_dir}' has no {FILENAME}: not a finished LiteDA run folder")
    try:
        d = read_json(path)
    except ValueError as e:
        fail(f"'{path}' is not valid JSON: {e}")
    return from_dict(d, str(path))


def find_records(root: str | os.PathLike) -> list[tuple[Path, StageRecord]]:
    """Every finished stage under ``root`` (run folders, deploy folders), sorted by path. Symlinked folders are
    followed (each real folder once), so a tree of links to chosen runs is a runs tree of its own."""
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        if FILENAME not in filenames:
            continue
        p = Path(dirpath) / FILENAME
        try:
            out.append((p.parent, from_dict(read_json(p), str(p))))
        except Exception:  # noqa: BLE001 - a foreign or half-written file is not a stage
            continue
    return sorted(out, key=lambda x: x[0])


def results_of(run_dir: str | os.PathLike, rec: Optional[StageRecord] = None) -> dict:
    """The run's measurements (``results.json`` unless the record names another file)."""
    rec = rec or read_record(run_dir)
    path = Path(run_dir) / rec.results
    if not path.is_file():
        fail(f"'{path}' does not exist (the results of '{run_dir}')")
    return read_json(path)


def copy_splits(src_run: str | os.PathLike, dst_run: str | os.PathLike, rec: StageRecord) -> None:
    """A derived run keeps its own copy of the image lists its parent used (run folders are self-contained)."""
    import shutil

    src, dst = Path(src_run) / rec.dataset.splits, Path(dst_run) / "splits"
    if src.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*")):
        if f.is_file():
            shutil.copyfile(f, dst / f.name)


def holdout_list(splits_dir: str | os.PathLike, domain: str) -> Path:
    """``<domain>_holdout.txt``: unlabeled train images a derived run set aside from everything it fitted."""
    return Path(splits_dir) / f"{domain}_holdout.txt"


def hold_out(splits_dir: str | os.PathLike, domain: str, frac: float, seed: int) -> int:
    """Move a seeded ``frac`` share of ``<domain>_train.txt`` into :func:`holdout_list` (in a run's own copy of
    the lists); a list that already has a holdout (its parent set one aside) is kept as it is, and ``frac`` 0
    sets none aside. Returns the number of held-out images."""
    import random

    from .utils import atomic_write_text

    held, train = holdout_list(splits_dir, domain), Path(splits_dir) / f"{domain}_train.txt"
    if held.is_file():
        return len(held.read_text().splitlines())
    if not frac:
        return 0
    lines = train.read_text().splitlines()
    n = max(1, round(frac * len(lines)))
    if n >= len(lines):
        fail(f"--ft-holdout {frac:g} would leave no image of '{train}' ({len(lines)} lines) to train on")
    pick = set(random.Random(seed).sample(range(len(lines)), n))
    atomic_write_text(held, "".join(f"{x}\n" for i, x in enumerate(lines) if i in pick))
    atomic_write_text(train, "".join(f"{x}\n" for i, x in enumerate(lines) if i not in pick))
    return n
