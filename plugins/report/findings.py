"""The written report's statements, each derived from the records: the setup, the methods that ran, what helped
and what did not, and the limitations the records show. Every number is read from a record or computed from the
tables; nothing here is a hand-written result.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional, Sequence

from ..tables import accuracy_grid, average_over_tasks, order_tasks
from ..utils import machine_label
from . import tables
from .collect import STUDENT_ARCH, TRAIN_KINDS, Collected

# Display names of the datasets LiteDA lays out itself (a Custom dataset is named by its records).
DATASET_NAMES = {"Office31": "Office-31", "OfficeCaltech": "Office-Caltech-10", "Digits": "Digits (embedded)"}


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def _pt(v: float) -> str:
    return f"{v:+.1f} pt"


def _trained(c: Collected):
    return [s for s in c.stages if s.rec.kind in TRAIN_KINDS]


def row_average(rows: Sequence[dict], key: str) -> Optional[float]:
    """A row's Avg column: the mean over seeds of its average over every task (None without a complete seed)."""
    g = accuracy_grid(rows, tables.target_test_acc)
    vals = average_over_tasks(g, key)
    return statistics.fmean(vals) if vals else None


def paired_delta(rows: Sequence[dict], key: str, base: str) -> Optional[float]:
    """Mean of ``key``'s accuracy minus ``base``'s over the (task, seed) pairs both have: a row that exists for
    only some seeds (an artifact bench recommended on those) is compared on those seeds, not with another mean."""
    acc = lambda k: {(r["task"], r["seed"]): tables.target_test_acc(r) for r in rows if r["method"] == k}  # noqa: E731
    a, b = acc(key), acc(base)
    common = [pair for pair in a if a[pair] is not None and b.get(pair) is not None]
    return statistics.fmean(a[pair] - b[pair] for pair in common) if common else None


def dataset_name(c: Collected) -> str:
    names = sorted({s.rec.dataset.name for s in c.stages})
    return ", ".join(DATASET_NAMES.get(n, n) for n in names) or c.dataset


# ----------------------------------------------------------------------------- setup
def weights_used(c: Collected) -> dict[str, list[str]]:
    """The pretrained weights of the trained stages, by the arch they initialised."""
    out: dict[str, set] = {}
    for s in _trained(c):
        if s.rec.weights:
            out.setdefault(s.rec.arch, set()).add(s.rec.weights)
    return {arch: sorted(w) for arch, w in sorted(out.items())}


def is_standin(weights: str) -> bool:
    return "standin" in weights.replace("-", "").replace("_", "").lower()


def setup_lines(c: Collected) -> list[str]:
    """Data, weights, protocol, budget and machine, as the records give them."""
    trained = _trained(c)
    tasks = order_tasks({s.rec.task for s in c.stages})
    classes = sorted({len(s.rec.dataset.classes) for s in c.stages})
    seeds = sorted({s.rec.seed for s in c.stages})
    lines = [f"Data: {dataset_name(c)}, {' / '.join(map(str, classes))} classes, tasks "
             f"{', '.join(t.replace('2', '→') for t in tasks)} (source → target)."]
    sizes = []
    for task in tasks:
        res = [s.results for s in trained if s.rec.task == task]
        n_s = sorted({r["n_source_train"] for r in res if r.get("n_source_train")})
        n_t = sorted({r["n_target_train"] for r in res if r.get("n_target_train")})
        n_test = sorted({(r.get("target_test") or {}).get("n") for r in res if (r.get("target_test") or {}).get("n")})
        if n_s and n_t and n_test:
            sizes.append(f"{task.replace('2', '→')}: {n_s[0]} labeled source-train, {n_t[0]} unlabeled "
                         f"target-train, {n_test[0]} target-test images")
    if sizes:
        lines.append("Images per task: " + "; ".join(sizes) + ".")
    for arch, ws in weights_used(c).items():
        desc = "; ".join(("stand-in weights " if is_standin(w) else "") + f"`{w}`" for w in ws)
        lines.append(f"Initial weights of {arch}: {desc}.")
    protocol = sorted({s.rec.dataset.protocol for s in trained}) or ["heldout"]
    epochs = sorted({s.results["epochs"] for s in trained if s.results.get("epochs")})
    lines.append(f"Protocol: {', '.join(protocol)} (train on source-train and unlabeled target-train, report "
                 f"target-test); epochs {', '.join(map(str, epochs)) or '–'}; seeds {', '.join(map(str, seeds))}; "
                 "the last epoch is reported.")
    machines = sorted({machine_label(s.results["machine"]) for s in trained if s.results.get("machine")})
    if machines:
        lines.append(f"Training machine: {'; '.join(machines)}.")
    return lines


def methods_lines(c: Collected) -> list[str]:
    """What ran, from the records: regimes, adaptation methods, teacher, distillation, compression, deployment."""
    first = {}
    for r in c.rows:
        first.setdefault(r["method"], r)
    labels = c.labels
    by_group = {}
    for k in c.order:
        by_group.setdefault(first[k].get("group"), []).append(k)
    lines = []
    if "source_only" in by_group:
        lines.append(f"Source-only ({', '.join(labels[k] for k in by_group['source_only'])}): the student "
                     f"({STUDENT_ARCH}) trained on labeled source images only; the lower reference.")
    adapt = [k for k in by_group.get("adapt", []) if first[k].get("arch", STUDENT_ARCH) == STUDENT_ARCH]
    if adapt:
        lines.append(f"Adaptation on the student: {', '.join(labels[k] for k in adapt)} (labeled source plus "
                     "unlabeled target images; no target label is read).")
    teachers = tables.teachers_used(c.runs)
    if by_group.get("distill"):
        lines.append(f"Distillation: {', '.join(labels[k] for k in by_group['distill'])}, from the adapted "
                     f"teacher{'s' if len(teachers) > 1 else ''} {'; '.join(teachers) or '(not recorded)'} on "
                     "unlabeled target images.")
    for key in by_group.get("compress", []):
        comp = [r for r in c.compressed if r["method"] == key]
        lines.append(f"Compression `{key}` ({labels[key]}): {', '.join(comp[0]['techniques']) or 'no technique'}, "
                     "each step followed by a recovery fine-tune on unlabeled target images.")
    if c.bench:
        names = list(dict.fromkeys(b["name"] for b in c.bench))
        rules = sorted({(s.results.get("recommended") or {}).get("rule") for s in c.stages
                        if s.rec.kind == "bench"} - {None})
        lines.append(f"Deployment: every artifact benchmarked ({', '.join(names)}): the accuracy of that file, "
                     "batch-1 latency and batch-32 throughput."
                     + (f" Recommended artifact: {rules[0]}." if rules else ""))
    if "oracle" in by_group:
        lines.append(f"Oracle ({', '.join(labels[k] for k in by_group['oracle'])}): the student trained on labeled "
                     "target-train images with the same budget; the upper reference, never a deliverable.")
    return lines


# ----------------------------------------------------------------------------- what helped
def what_helped_lines(c: Collected) -> list[str]:
    """Statements derived from the averages over tasks: each row against source-only and the oracle, where a row
    that helps on average loses on a task, distillation against the best adaptation method, what compression cost,
    and how far a label-free validator's pick is from the best run."""
    rows, order, labels = c.rows, c.order, c.labels
    first = {}
    for r in rows:
        first.setdefault(r["method"], r)
    avg = {k: row_average(rows, k) for k in order}
    base = next((k for k in order if first[k].get("group") == "source_only"), None)
    oracle = next((k for k in order if first[k].get("group") == "oracle"), None)
    lines = []
    if base is not None and avg.get(base) is not None:
        delta = {k: paired_delta(rows, k, base) for k in order if k not in (base, oracle)}
        others = [k for k in order if delta.get(k) is not None]
        better = [k for k in others if delta[k] > 0]
        worse = [k for k in others if delta[k] <= 0]
        if better:
            lines.append("Beat source-only on average (same tasks and seeds): " + "; ".join(
                f"{labels[k]} ({_pt(delta[k])})" for k in better) + ".")
        if worse:
            lines.append("Did not beat source-only on average (same tasks and seeds): " + "; ".join(
                f"{labels[k]} ({_pt(delta[k])})" for k in worse) + ".")
        g = accuracy_grid(rows, tables.target_test_acc, rows=order)
        base_cells = g["grid"].get(base, {})
        mixed = []
        for k in better:
            cells = g["grid"].get(k, {})
            lost = [t for t in g["tasks"] if t in cells and t in base_cells
                    and statistics.fmean(cells[t].values()) < statistics.fmean(base_cells[t].values())]
            if lost:
                mixed.append(f"{labels[k]} ({', '.join(t.replace('2', '→') for t in lost)})")
        if mixed:
            lines.append("Above source-only on average but below it on some tasks (mean over seeds): "
                         + "; ".join(mixed) + ".")
    adapt = [k for k in order if first[k].get("group") == "adapt" and first[k].get("arch", STUDENT_ARCH) == STUDENT_ARCH
             and avg.get(k) is not None]
    for k in (k for k in order if first[k].get("group") == "distill" and avg.get(k) is not None):
        if adapt:
            best = max(adapt, key=avg.get)
            lines.append(f"Distillation ({labels[k]}) vs the best adaptation method on the student ({labels[best]}): "
                         f"{_pt(avg[k] - avg[best])}.")
    for key in (k for k in order if first[k].get("group") == "compress"):
        comp = [r for r in c.compressed if r["method"] == key]
        steps = compression_steps(comp)
        if steps:
            lines.append(f"Compression `{key}`, accuracy change of each step (mean over tasks and seeds): "
                         + "; ".join(f"{op} {_pt(d)}" for op, d in steps) + ".")
        deployed = [k for k in order if first[k].get("group") == "deployed" and first[k].get("parent") == key
                    and avg.get(k) is not None]
        before = {(r["task"], r["seed"]): tables.target_test_acc(r.get("before") or {}) for r in comp}
        for d in deployed:
            after = {(r["task"], r["seed"]): tables.target_test_acc(r) for r in rows if r["method"] == d}
            common = [pair for pair in after if after[pair] is not None and before.get(pair) is not None]
            if common:
                mean_after = statistics.fmean(after[pair] for pair in common)
                mean_before = statistics.fmean(before[pair] for pair in common)
                lines.append(f"{labels[d]}: {_pct(mean_after)} on average, {_pt(mean_after - mean_before)} against "
                             f"the uncompressed student it was made from (the same {len(common)} task-seed runs).")
    if oracle is not None and avg.get(oracle) is not None:
        cands = [k for k in order if k != oracle and avg.get(k) is not None
                 and first[k].get("arch", STUDENT_ARCH) == STUDENT_ARCH]
        if cands:
            best = max(cands, key=avg.get)
            lines.append(f"Closest to the oracle ({_pct(avg[oracle])}): {labels[best]} at {_pct(avg[best])} "
                         f"({_pt(avg[best] - avg[oracle])}).")
    _, agree = tables.validator_agreement(c.runs)
    if agree and agree[-1][0] == "mean" and agree[-1][3] != "–":
        lines.append(f"Label-free choice: the run the IM validator picks scores {agree[-1][3]}% on average, the best "
                     f"run {agree[-1][-1]}% (tasks and seeds with at least three candidate runs).")
    return lines or ["Not enough finished runs for averages over every task."]


def compression_steps(comp: Sequence[dict]) -> list[tuple[str, float]]:
    """(step, mean accuracy change of that step over tasks and seeds) of one compress recipe."""
    deltas: dict[str, list[float]] = {}
    for c in comp:
        prev = tables.target_test_acc(c.get("before") or {})
        for st in c.get("stages") or []:
            acc = st.get("target_test_acc")
            op = st["op"] + (f":{st['kind']}" if st.get("kind") else "")
            if prev is not None and acc is not None:
                deltas.setdefault(op, []).append(acc - prev)
            prev = acc
    return [(op, statistics.fmean(d)) for op, d in deltas.items()]


# ----------------------------------------------------------------------------- limitations
def limitations(c: Collected, figure_notes: Sequence[str] = ()) -> list[str]:
    """What the records say the results cannot claim."""
    out = []
    for arch, ws in weights_used(c).items():
        stand = [w for w in ws if is_standin(w)]
        if stand:
            out.append(f"{arch} started from stand-in ImageNet weights ({', '.join(Path(w).name for w in stand)}), "
                       "not the library's own: absolute accuracies are not those of the published weights.")
        if "scratch" in ws:
            out.append(f"{arch} was trained from scratch (no ImageNet pretraining).")
    names = {s.rec.dataset.name for s in c.stages}
    if "OfficeCaltech" in names:
        n = sorted({len(s.rec.dataset.classes) for s in c.stages if s.rec.dataset.name == "OfficeCaltech"})
        out.append(f"Office-Caltech-10 ({'/'.join(map(str, n))} classes shared by Office-31 and Caltech-256) stands "
                   "in for Office-31: the numbers are not comparable with Office-31 tables.")
    if "Digits" in names:
        out.append("Digits is the embedded demonstration task (scikit-learn's digits and a textured copy), not a "
                   "published benchmark.")
    out += _test_size_lines(c)
    out += _deploy_lines(c)
    single = [c.labels[k] for k in c.order if len({r["seed"] for r in c.rows if r["method"] == k}) == 1]
    if single and len({s.rec.seed for s in c.stages}) > 1:
        out.append(f"One seed only (no spread): {', '.join(single)}.")
    shared = [t for t in tables.teachers_used(c.runs) if "teacher seed" in t]
    if shared:
        out.append(f"Students share a teacher: {'; '.join(shared)}; their spread is the student's, not the "
                   "teacher's.")
    collapsed = [r for r in c.runs if (r.get("collapse") or {}).get("collapsed")]
    if collapsed:
        out.append("Collapsed models (target predictions in one class): " + ", ".join(
            f"{c.labels.get(r['method'], r['method'])} {r['task']} seed {r['seed']}" for r in collapsed) + ".")
    out += list(figure_notes)
    return out


def _test_size_lines(c: Collected) -> list[str]:
    sizes = sorted({(r.get("target_test") or {}).get("n") for r in c.runs} - {None})
    if not sizes:
        return []
    lo, hi = sizes[0], sizes[-1]
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    step = f"{100 / hi:.1f}" if lo == hi else f"{100 / hi:.1f}-{100 / lo:.1f}"
    return [f"Target-test sets hold {span} images per task: one image is {step} accuracy points."]


def _deploy_lines(c: Collected) -> list[str]:
    benches = [s for s in c.stages if s.rec.kind == "bench"]
    if not benches:
        return ["No artifact was benchmarked: no deployed accuracy, size or latency."]
    out = []
    trt = [b for b in c.bench if b.get("runtime") == "trt"]
    if not any(b.get("p50_ms") is not None for b in trt):
        why = sorted({b["note"] for b in trt if b.get("note")})
        out.append("No TensorRT engine was measured" + (f" ({why[0]})" if why else
                                                        " (no TensorRT artifact in the bench records)") + ".")
    machines = sorted({(s.results.get("machine") or {}).get("gpu") or (s.results.get("machine") or {}).get("cpu")
                       for s in benches} - {None})
    if machines:
        out.append(f"Latency and throughput were measured on {'; '.join(machines)}, each bench run on its own: "
                   "artifacts of different bench runs were not timed interleaved, so a small latency difference "
                   "between them may be the machine's drift.")
    return out
