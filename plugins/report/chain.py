"""The models the report follows from the unadapted student to the file that ships: source-only, the adapted
teacher, the distilled student, the deployed (compressed) student and the oracle, each as the stage per task and
seed that holds its model; and the artifact of the deployed student whose confusion matrices the report draws.

Which stage plays which part is read from the records: the deployed student is the first compress stage (in
table order) that a bench stage deployed, the distilled student its parent, the teacher that student's
``teacher`` parent. Without a compress stage, the first distilled student is followed; parts no record plays are
left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..record import read_record, results_of
from ..tables import order_tasks
from ..utils import UserError
from .collect import STUDENT_ARCH, Collected, Stage, label_of


@dataclass
class ChainModel:
    role: str                 # source_only, teacher, distilled, deployed, oracle
    title: str                # the figure title: what the model is
    key: str                  # its row key (run name)
    stages: dict[tuple[str, int], Stage] = field(default_factory=dict)  # (task, seed) -> the stage with the model
    note: str = ""            # how its features are taken, when that needs saying

    def first_seed(self, task: str) -> Optional[Stage]:
        seeds = sorted(s for t, s in self.stages if t == task)
        return self.stages[(task, seeds[0])] if seeds else None

    @property
    def tasks(self) -> list[str]:
        return order_tasks({t for t, _ in self.stages})


def _stage_of(path: Path, by_dir: dict[Path, Stage]) -> Optional[Stage]:
    """The stage in a folder: from the tree, else read from the folder (a teacher kept outside the tree)."""
    if path.resolve() in by_dir:
        return by_dir[path.resolve()]
    try:
        rec = read_record(path)
    except UserError:
        return None
    try:
        results = results_of(path, rec)
    except (UserError, ValueError):
        results = {}
    return Stage(path, rec, results)


def _parent_stage(s: Stage, role: str, by_dir: dict[Path, Stage]) -> Optional[Stage]:
    return _stage_of(s.rec.parent(s.run_dir, role), by_dir) if role in s.rec.parents else None


def _first(c: Collected, group: str) -> Optional[str]:
    keys = {r["method"] for r in c.rows if r.get("group") == group and r.get("arch", STUDENT_ARCH) == STUDENT_ARCH}
    return next((k for k in c.order if k in keys), None)


def _by_name(c: Collected, kind: str, name: str) -> dict[tuple[str, int], Stage]:
    return {(s.rec.task, s.rec.seed): s for s in c.stages if s.rec.kind == kind and s.rec.name == name}


def deployed_key(c: Collected) -> Optional[str]:
    """The row key of the model that ships: the first compress stage a bench deployed, else the first distilled
    (or any benchmarked) model."""
    deployed = {b["parent"] for b in c.bench}
    compressed = [k for k in c.order if k in deployed and any(r["method"] == k for r in c.compressed)]
    if compressed:
        return compressed[0]
    distilled = _first(c, "distill")
    if distilled in deployed:
        return distilled
    return next((k for k in c.order if k in deployed), None)


def chain_models(c: Collected) -> list[ChainModel]:
    """The parts of the chain that some record plays, in pipeline order."""
    by_dir = {s.run_dir.resolve(): s for s in c.stages}
    shipped = deployed_key(c)
    ship_stages = {(s.rec.task, s.rec.seed): s for s in c.stages
                   if s.rec.name == shipped and s.rec.kind != "bench"} if shipped else {}
    compressed = any(s.rec.kind == "compress" for s in ship_stages.values())
    # the distilled student: the shipped compress stage's parent, else the first distill row
    if compressed:
        distilled = {k: p for k, s in ship_stages.items() for p in [_parent_stage(s, "model", by_dir)] if p}
    else:
        key = _first(c, "distill")
        distilled = _by_name(c, "distill", key) if key else {}
    teacher = {}
    for k, s in distilled.items():
        role = next((r for r in sorted(s.rec.parents) if r.startswith("teacher")), None)
        p = _parent_stage(s, role, by_dir) if role else None
        if p is not None:
            teacher[k] = p
    models = []
    source = _first(c, "source_only")
    if source:
        st = _by_name(c, "source_only", source)
        models.append(ChainModel("source_only", next(iter(st.values())).rec.label, source, st))
    if teacher:
        rec = next(iter(teacher.values())).rec
        title = label_of(rec) if label_of(rec).startswith("teacher") else f"adapted teacher: {rec.label}"
        models.append(ChainModel("teacher", title, rec.name, teacher))
    if distilled:
        rec = next(iter(distilled.values())).rec
        models.append(ChainModel("distilled", rec.label, rec.name, distilled))
    if compressed:
        rec = next(iter(ship_stages.values())).rec
        models.append(ChainModel("deployed", f"deployed: {rec.label}", rec.name, ship_stages,
                                 "features of its compressed PyTorch model (compressed.pt), the model the deployed "
                                 "files were exported from, not of an ONNX file"))
    oracle = _first(c, "oracle")
    if oracle:
        st = _by_name(c, "oracle", oracle)
        models.append(ChainModel("oracle", next(iter(st.values())).rec.label, oracle, st))
    return models


def deployed_confusions(c: Collected) -> list[dict]:
    """Per task, the target-test confusion matrix of the shipped model's deployed artifact on its first seed:
    the artifact bench recommended, else its first ONNX Runtime file, else its first artifact, among those whose
    record holds a confusion matrix. Each: task, seed, artifact, label, acc, confusion, classes."""
    shipped = deployed_key(c)
    if shipped is None:
        return []
    classes = {(s.rec.task, s.rec.seed): s.rec.dataset.classes for s in c.stages}
    out = []
    for task in order_tasks({b["task"] for b in c.bench if b["parent"] == shipped}):
        mine = [b for b in c.bench if b["parent"] == shipped and b["task"] == task
                and (b.get("target_test") or {}).get("confusion")]
        if not mine:
            continue
        seed = min(b["seed"] for b in mine)
        mine = [b for b in mine if b["seed"] == seed]
        pick = (next((b for b in mine if b.get("recommended")), None)
                or next((b for b in mine if b.get("runtime") == "ort"), None) or mine[0])
        out.append({"task": task, "seed": seed, "artifact": pick["name"], "label": pick["parent_label"],
                    "recommended": bool(pick.get("recommended")), "acc": pick.get("acc"),
                    "confusion": pick["target_test"]["confusion"], "classes": classes.get((task, seed), [])})
    return out
