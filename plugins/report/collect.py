"""Stage records -> table rows: every ``record.json`` under ``<runs>/<dataset>`` and the results file it names.

A row is a dict the table builders read: ``method`` (the row key: the record's name, or ``<parent name>/<artifact>``
for a deployed file), ``label``, ``group`` (where the row sits in a table), ``kind``, ``task``, ``seed``, ``arch``,
``_dir`` (the run folder) and the metrics (``target_test``, ``size_mb``, ``p50_ms``, ...). Which stages exist is
what the records say: a new stage or recipe shows up because it wrote a record.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..record import StageRecord, find_records, read_record, results_of
from ..utils import UserError, fail, read_json
from .confusion import completed

# Kinds whose results file is a training run's (liteda.run/1); compress writes liteda.compress/1, bench
# liteda.deploy_bench/1.
TRAIN_KINDS = ("source_only", "adapt", "oracle", "distill")
# The model every stage adapts, distils into and compresses; a trained run of another arch is a teacher.
STUDENT_ARCH = {f.name: f.default for f in dataclasses.fields(StageRecord)}["arch"]
# Where each group of rows sits in a table: the pipeline's order. A kind not listed sits after these, before the
# oracle, so a new kind of stage is reported without a change here.
GROUP_ORDER = ("source_only", "adapt", "teacher", "distill", "compress", "deployed")
LAST_GROUP = "oracle"


@dataclass
class Stage:
    run_dir: Path
    rec: StageRecord
    results: dict


@dataclass
class Collected:
    dataset: str
    base: Path
    stages: list[Stage]
    runs: list[dict]         # trained models (source-only, adapted, teachers, distilled, oracle)
    compressed: list[dict]   # compress stages
    bench: list[dict]        # every benchmarked artifact (any runtime), tagged with the stage it deploys
    deployed: list[dict]     # accuracy rows: the file artifacts that ran on ONNX Runtime
    other: list[dict]        # stages of a kind without a section of its own

    @property
    def rows(self) -> list[dict]:
        """Every accuracy row, whatever its kind."""
        return self.runs + self.compressed + self.deployed + self.other

    @property
    def order(self) -> list[str]:
        return order_keys(self.rows)

    @property
    def labels(self) -> dict[str, str]:
        return row_labels(self.rows)


# ----------------------------------------------------------------------------- labels and order
def group_of(rec: StageRecord) -> str:
    """The record's place in the tables: its kind, or ``teacher`` for a trained run of another arch."""
    if rec.kind in ("source_only", "adapt") and rec.arch != STUDENT_ARCH:
        return "teacher"
    return rec.kind


def label_of(rec: StageRecord) -> str:
    """The record's row label (a teacher says so)."""
    if group_of(rec) == "teacher" and not rec.label.startswith("teacher"):
        return f"teacher: {rec.label}"
    return rec.label


def row_labels(rows: list[dict]) -> dict[str, str]:
    """Row key -> label (the first row of a key names it)."""
    out: dict[str, str] = {}
    for r in rows:
        out.setdefault(r["method"], r.get("label") or r["method"])
    return out


def group_rank(group: str) -> tuple:
    if group in GROUP_ORDER:
        return (GROUP_ORDER.index(group), "")
    return (len(GROUP_ORDER) + (group == LAST_GROUP), "" if group == LAST_GROUP else group)


def _method_order() -> list[str]:
    from ..adaptation import METHODS  # adaptation rows follow the method registry, as tllib's tables do

    return METHODS.names()


def order_keys(rows: list[dict]) -> list[str]:
    """Row keys in pipeline order: source-only, adapted (registry order), teachers, distilled, compressed,
    deployed artifacts (after the stage they deploy), other kinds, oracle; by name within a group."""
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["method"], r)
    methods = _method_order() if any(r.get("group") == "adapt" for r in first.values()) else []

    def within(k: str) -> tuple:
        g = first[k].get("group", "")
        if g == "adapt":
            return (methods.index(k) if k in methods else len(methods), k)
        return (0, k)

    models = sorted((k for k in first if first[k].get("group") != "deployed"),
                    key=lambda k: (group_rank(first[k].get("group", "")), within(k)))
    pos = {k: i for i, k in enumerate(models)}

    def key(k: str) -> tuple:
        r = first[k]
        if r.get("group") == "deployed":
            return (group_rank("deployed"), (pos.get(r.get("parent"), len(pos)), r.get("artifact") or k))
        return (group_rank(r.get("group", "")), within(k))

    return sorted(first, key=key)


# ----------------------------------------------------------------------------- rows
def _ident(s: Stage) -> dict:
    rec = s.rec
    return {"method": rec.name, "label": label_of(rec), "group": group_of(rec), "kind": rec.kind,
            "task": rec.task, "seed": rec.seed, "arch": rec.arch, "_dir": s.run_dir}


def _parent(s: Stage, role: str, by_dir: dict[Path, Stage]) -> Optional[StageRecord]:
    """A parent's record: from the tree when it is there, else read from its folder (a teacher kept elsewhere)."""
    path = s.rec.parent(s.run_dir, role)
    if path.resolve() in by_dir:
        return by_dir[path.resolve()].rec
    try:
        return read_record(path)
    except UserError:
        return None


def run_row(s: Stage, by_dir: dict[Path, Stage]) -> dict:
    """A trained model (liteda.run/1), with the teachers it learned from (its ``teacher*`` parents)."""
    teachers = [{"name": p.name, "arch": p.arch, "seed": p.seed}
                for role in sorted(s.rec.parents) if role.startswith("teacher")
                for p in [_parent(s, role, by_dir)] if p is not None]
    res = s.results.get("resources") or {}
    return {**s.results, **_ident(s), "target_test": completed(s.results.get("target_test")), "teachers": teachers,
            "size_mb": res.get("model_mb"), "p50_ms": None}


def compress_row(s: Stage) -> dict:
    """A compress stage (liteda.compress/1): the model before, each step, and the compressed model."""
    r = s.results
    after = r.get("after") or {}
    return {**_ident(s), "target_test": completed(after.get("target_test")), "before": r.get("before") or {},
            "stages": r.get("stages") or [], "techniques": r.get("techniques") or [],
            "resources": {"params": after.get("params"), "macs": after.get("macs"), "model_mb": after.get("file_mb")},
            "size_mb": after.get("file_mb"), "p50_ms": after.get("latency_ms_p50")}


def bench_rows(s: Stage, by_dir: dict[Path, Stage]) -> list[dict]:
    """A bench stage's artifacts (liteda.deploy_bench/1), each tagged with the stage whose model it deploys."""
    parent = _parent(s, "model", by_dir) if "model" in s.rec.parents else None
    tag = {"parent": parent.name if parent else s.rec.name, "parent_label": label_of(parent) if parent else s.rec.label,
           "parent_kind": parent.kind if parent else None, "task": s.rec.task, "seed": s.rec.seed, "_dir": s.run_dir}
    chosen = (s.results.get("recommended") or {}).get("artifact")  # bench's label-free pick, if it made one
    return [{**row, **tag, "recommended": row.get("name") == chosen} for row in s.results.get("rows") or []]


def deployed_rows(bench: list[dict]) -> list[dict]:
    """One accuracy row per file artifact that ran on ONNX Runtime, and the artifact bench recommended (whatever
    its runtime), labelled "<parent label>, <artifact>"; with the artifact's other target metrics where bench
    recorded them."""
    return [{"method": f"{b['parent']}/{b['name']}", "label": f"{b['parent_label']}, {b['name']}",
             "recommended": bool(b.get("recommended")),
             "group": "deployed", "kind": "bench", "task": b["task"], "seed": b["seed"], "parent": b["parent"],
             "parent_kind": b.get("parent_kind"), "artifact": b["name"],
             "target_test": {**completed(b.get("target_test")), "acc": b["acc"]},  # bench's own accuracy column
             "size_mb": b.get("size_mb"), "p50_ms": b.get("p50_ms"), "bs32_img_s": b.get("bs32_img_s"),
             "_dir": b.get("_dir")}
            for b in bench if (b.get("runtime") == "ort" or b.get("recommended")) and b.get("acc") is not None]


def other_row(s: Stage) -> dict:
    """A stage of a kind the report has no section for: its own results, keyed and labelled by its record."""
    return {**s.results, **_ident(s)}


# ----------------------------------------------------------------------------- the tree
REPORT_SCHEMA = "liteda.report/1"  # summary.json of a results folder (build.py)


def _report_folders(base: Path) -> list[Path]:
    """Results folders written inside the runs tree (``liteda demo`` writes ``<runs>/<dataset>/report``): they
    hold copies of the records, which are not stages of their own."""
    out = []
    for p in base.rglob("summary.json"):
        try:
            if read_json(p).get("schema") == REPORT_SCHEMA:
                out.append(p.parent.resolve())
        except (OSError, ValueError, AttributeError):
            continue
    return out


def _identity(s: Stage) -> tuple:
    return s.rec.kind, s.rec.name, s.rec.task, s.rec.seed


def read_stages(base: Path) -> list[Stage]:
    """Every finished stage under ``base`` with its results (a record whose results file is missing or broken is
    reported and left out: the stage did not finish writing). Copies of records are left out: those inside a
    results folder, and of a stage found twice (same kind, name, task and seed) all but the one nearest ``base``."""
    reports = _report_folders(base)
    stages: dict[tuple, Stage] = {}
    for run_dir, rec in find_records(base):
        if any(r in run_dir.resolve().parents for r in reports):
            continue
        try:
            s = Stage(run_dir, rec, results_of(run_dir, rec))
        except (UserError, ValueError) as e:
            print(f"report: leaving out '{run_dir}': {e}", file=sys.stderr)
            continue
        seen = stages.get(_identity(s))
        if seen is None or len(s.run_dir.parts) < len(seen.run_dir.parts):
            stages[_identity(s)] = s
    return sorted(stages.values(), key=lambda s: s.run_dir)


def collect(runs_root: str | Path, dataset: str) -> Collected:
    """The rows of every stage under ``<runs_root>/<dataset>``."""
    base = Path(runs_root) / dataset
    if not base.is_dir():
        fail(f"no runs for dataset '{dataset}' under '{runs_root}'")
    stages = read_stages(base)
    by_dir = {s.run_dir.resolve(): s for s in stages}
    runs, comp, bench, other = [], [], [], []
    for s in stages:
        if s.rec.kind in TRAIN_KINDS:
            runs.append(run_row(s, by_dir))
        elif s.rec.kind == "compress":
            comp.append(compress_row(s))
        elif s.rec.kind == "bench":
            bench += bench_rows(s, by_dir)
        else:
            other.append(other_row(s))
    return Collected(dataset, base, stages, runs, comp, bench, deployed_rows(bench), other)


def collect_runs(runs_root: str | Path, dataset: str) -> list[dict]:
    """The trained models' rows alone (``method`` = run name, ``task``, ``seed`` and their results)."""
    return collect(runs_root, dataset).runs
