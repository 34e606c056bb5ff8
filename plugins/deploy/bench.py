"""Benchmark deployable artifacts: bs1 latency (p50/p90/p99), bs32 throughput, file size, the accuracy of that
exact artifact on target-test (a broken INT8 shows as broken) with its other target metrics and confusion
matrix (``target_test``, as a training run records them), and its top-1 agreement with the run's model on
unlabeled target-train images (what the recommendation reads: no target label), with the runtime's
threads/providers; and the table writers (``<stem>.json/.md/.csv``, schema ``liteda.deploy_bench/1``, with the
CPU's instruction sets and the runtimes' versions).

A row is a :class:`~liteda.deploy.artifact.LoadedArtifact` (``run(x) -> logits`` on N x 3 x H x W float32
arrays); :func:`benchmark_artifact` times one, :func:`run_benchmark` a list.
"""
from __future__ import annotations

import csv
import io
import os
import statistics
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..metrics import time_calls
from ..tables import to_markdown
from ..utils import atomic_write_text, machine_info, write_json
from .artifact import LoadedArtifact, Runner, file_size_mb

COLUMNS = ("name", "runtime", "precision", "size_mb", "acc", "agree_fp32", "agree_unlabeled", "agree_student", "p50_ms",
           "p90_ms", "p99_ms", "bs32_img_s", "threads", "providers", "note")


# ----------------------------------------------------------------------------- timing
def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def batched_logits(run: Runner, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([run(images[i:i + batch]) for i in range(0, len(images), batch)])


def target_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The artifact's target-test metrics as a training run records them (accuracy, loss, macro P/R/F1, NMI, Rand,
    ARI, per-class accuracy, confusion matrix): the report draws the deployed file's confusion from here."""
    import torch

    from ..metrics import classification_metrics

    return classification_metrics(torch.from_numpy(np.asarray(logits, dtype=np.float32)),
                                  torch.from_numpy(np.asarray(labels, dtype=np.int64)), int(logits.shape[1]))


def benchmark_artifact(art: LoadedArtifact, images: np.ndarray, labels: Optional[np.ndarray] = None, iters: int = 200,
                       warmup: int = 20, batch: int = 32, ref_pred: Optional[np.ndarray] = None,
                       unlabeled: Optional[np.ndarray] = None, ref_unlabeled: Optional[np.ndarray] = None,
                       ref_student: Optional[np.ndarray] = None) -> dict[str, Any]:
    """One table row: latency at batch 1, throughput at ``batch``, size, and accuracy over ``images``.

    ``images``: normalised target-test images (N x 3 x H x W float32); ``labels`` are read only to score the
    artifact, never to build it. ``ref_pred``: the FP32 reference's predictions (agreement column).
    ``unlabeled``: unlabeled target-train images and ``ref_unlabeled`` the run's model's predictions on them
    (``agree_unlabeled``: the label-free agreement the recommendation reads). ``ref_student``: for a compressed
    run, the float model it was compressed from on the same images (``agree_student``: how far the whole
    compression moved the predictions, still without labels).
    """
    has_file = bool(art.path) and os.path.isfile(art.path)
    row: dict[str, Any] = {"name": art.name, "runtime": art.runtime, "precision": art.precision,
                           "path": art.path, "size_mb": file_size_mb(art.path) if has_file else None,
                           "threads": art.info.get("threads"), "providers": art.info.get("providers"), "note": art.note,
                           **{k: v for k, v in art.info.items() if k not in ("threads", "providers")}}
    if art.run is None:
        return row
    images = np.ascontiguousarray(images, dtype=np.float32)
    logits = batched_logits(art.run, images, batch)
    pred = logits.argmax(1)
    row["n_images"] = int(len(images))
    row["logits_finite"] = bool(np.isfinite(logits).all())
    if labels is not None:
        row["acc"] = float((pred == labels).mean() * 100)
        row["target_test"] = target_metrics(logits, labels)
    if ref_pred is not None:
        row["agree_fp32"] = float((pred == ref_pred).mean() * 100)
    row["pred"] = pred  # popped by the caller after agreement is computed
    if unlabeled is not None and ref_unlabeled is not None:
        upred = batched_logits(art.run, np.ascontiguousarray(unlabeled, dtype=np.float32), batch).argmax(1)
        row["agree_unlabeled"] = float((upred == ref_unlabeled).mean() * 100)
        row["n_unlabeled"] = int(len(unlabeled))
        if ref_student is not None:
            row["agree_student"] = float((upred == ref_student).mean() * 100)
    x1 = images[:1]
    lat = time_calls(lambda: art.run(x1), iters, warmup)
    row.update({"p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
                "mean_ms": statistics.fmean(lat), "iters": iters, "warmup": warmup})
    xb = np.resize(images, (batch, *images.shape[1:]))  # repeat images when the test set is smaller than a batch
    n_batches = max(2, iters // 20)
    bt = time_calls(lambda: art.run(xb), n_batches, max(1, warmup // 10))
    row["bs32_img_s" if batch == 32 else f"bs{batch}_img_s"] = batch * n_batches / (sum(bt) / 1e3)
    return row


def run_benchmark(artifacts: Sequence[LoadedArtifact], images: np.ndarray, labels: Optional[np.ndarray], iters: int = 200,
                  warmup: int = 20, batch: int = 32, progress: Callable[[str], None] = print,
                  unlabeled: Optional[np.ndarray] = None, ref_unlabeled: Optional[np.ndarray] = None,
                  ref_student: Optional[np.ndarray] = None) -> list[dict]:
    """Rows in order; the first runnable FP32 row is the reference of ``agree_fp32`` (target-test), the run's
    model (``ref_unlabeled``) the reference of ``agree_unlabeled``, the float student (``ref_student``) that
    of ``agree_student``."""
    rows, ref = [], None
    for art in artifacts:
        row = benchmark_artifact(art, images, labels, iters, warmup, batch, ref, unlabeled, ref_unlabeled,
                                 ref_student)
        pred = row.pop("pred", None)
        if ref is None and pred is not None and art.precision == "fp32":
            ref = pred
            row["agree_fp32"] = 100.0
        progress(format_row(row))
        rows.append(row)
    return rows


def interleaved_latency(runs: dict[str, Runner], inputs: dict[str, np.ndarray], rounds: int = 30, calls: int = 10,
                        warmup: int = 20, seed: int = 0) -> dict[str, list[float]]:
    """bs1 latency of several artifacts measured in turn: each round times a block of ``calls`` calls of every
    artifact, in a fresh random order, and records the block's mean (ms per call).

    On a shared machine the load drifts on a scale of seconds; timing one artifact after the other (as
    :func:`benchmark_artifact` does) lets that drift into a comparison, interleaving spreads it over all of
    them, and the per-round ratio of two artifacts is a paired measurement. ``inputs[name]``: its bs1 input.
    """
    rng = np.random.default_rng(seed)
    names = list(runs)
    for n in names:
        for _ in range(warmup):
            runs[n](inputs[n])
    blocks: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for i in rng.permutation(len(names)):
            n = names[i]
            blocks[n].append(statistics.fmean(time_calls(lambda: runs[n](inputs[n]), calls, 0)))
    return blocks


def paired_ratio(baseline: Sequence[float], candidate: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Speed-up of ``candidate`` over ``baseline`` from per-round block means: the median of the per-round
    ratios and a 95% bootstrap interval of that median (rounds resampled with replacement)."""
    r = np.asarray(baseline, dtype=float) / np.asarray(candidate, dtype=float)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(r, size=(n_boot, len(r)), replace=True), axis=1)
    return {"speedup_median": float(np.median(r)), "speedup_ci95": [float(np.percentile(boot, 2.5)),
                                                                    float(np.percentile(boot, 97.5))],
            "rounds": int(len(r))}


# ----------------------------------------------------------------------------- reports
def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def format_row(row: dict) -> str:
    if row.get("p50_ms") is None:
        return f"{row['name']:16s} {row.get('note') or 'not run'}"
    return (f"{row['name']:16s} acc {_fmt(row.get('acc'), 1):>5s}  agree {_fmt(row.get('agree_fp32'), 1):>5s}  "
            f"agree(unlabeled) {_fmt(row.get('agree_unlabeled'), 1):>5s}  "
            + (f"agree(student) {_fmt(row['agree_student'], 1):>5s}  " if "agree_student" in row else "") +
            f"p50 {row['p50_ms']:.2f} ms  p90 {row['p90_ms']:.2f}  bs32 {row.get('bs32_img_s', 0):.0f} img/s  "
            f"{_fmt(row.get('size_mb'))} MB")


def markdown_table(rows: Sequence[dict], machine: dict, title: str = "", recommended: Optional[dict] = None,
                   threads: Any = None) -> str:
    head = ["artifact", "size MB", "target-test acc %", "agree w/ FP32 %", "agree w/ model, unlabeled target-train %",
            "bs1 p50 ms", "p90 ms", "p99 ms", "bs32 img/s", "threads", "providers / note"]
    student = any("agree_student" in r for r in rows)  # a compressed run: its float student is a reference too
    if student:
        head.insert(5, "agree w/ float student, unlabeled target-train %")
    body = [[r["name"], _fmt(r.get("size_mb")), _fmt(r.get("acc"), 1), _fmt(r.get("agree_fp32"), 1),
             _fmt(r.get("agree_unlabeled"), 1), *([_fmt(r.get("agree_student"), 1)] if student else []),
             _fmt(r.get("p50_ms")), _fmt(r.get("p90_ms")), _fmt(r.get("p99_ms")),
             _fmt(r.get("bs32_img_s"), 0), _fmt(r.get("threads")),
             " ".join(x for x in (str(r.get("providers") or ""), r.get("note") or "") if x)]
            for r in rows]
    from .machine import isa_summary

    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("runtime_versions") or {}).items() if v)
    versions = versions or f"torch {machine.get('torch')}, onnxruntime {machine.get('onnxruntime', '-')}"
    per_runtime = threads or "each runtime's default"
    lines = [f"## {title}" if title else "", "",
             f"Machine: {machine.get('gpu') or machine.get('cpu')}, {machine.get('cpu_count')} CPUs; {versions}; "
             f"threads: {per_runtime}.", ""]
    if machine.get("isa"):
        lines += [isa_summary(machine["isa"]) + " (INT8 and bf16 rows move most on another CPU).", ""]
    lines += [to_markdown(head, body).rstrip("\n")]
    if recommended is not None:
        lines += ["", f"**Recommended: {recommended.get('artifact') or 'none'}.** {recommended.get('why', '')}"]
    if not machine.get("gpu") and not any(r.get("runtime") == "trt" and r.get("p50_ms") is not None for r in rows):
        lines += ["", "No NVIDIA GPU on this machine: TensorRT FP16/INT8/FP8 were not measured."]
    return "\n".join(lines).lstrip() + "\n"


def csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in COLUMNS})
    return buf.getvalue()


def deploy_machine_info() -> dict:
    """:func:`liteda.utils.machine_info` with what decides deploy rows: CPU instruction sets, runtime versions."""
    from .machine import cpu_isa, runtime_versions

    return {**machine_info(), "isa": cpu_isa(), "runtime_versions": runtime_versions()}


def write_reports(rows: Sequence[dict], stem: str | os.PathLike, meta: Optional[dict] = None, title: str = "") -> dict:
    """``<stem>.json`` (everything), ``<stem>.md`` (the table), ``<stem>.csv`` (one row per artifact)."""
    meta = meta or {}
    machine = deploy_machine_info()
    doc = {"schema": "liteda.deploy_bench/1", "machine": machine, **meta, "rows": list(rows)}
    write_json(f"{stem}.json", doc)
    atomic_write_text(f"{stem}.md", markdown_table(rows, machine, title, meta.get("recommended"), meta.get("threads")))
    atomic_write_text(f"{stem}.csv", csv_text(rows))
    return doc
