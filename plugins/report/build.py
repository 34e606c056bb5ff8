"""The results folder of one dataset's runs tree: tables (Markdown + CSV), figures (PNG grids), ``report.md``, a
self-contained ``report.html``, the written ``report.pdf``, ``summary.json``, and copies of the records and results
they were built from (a runs tree holds checkpoints and is not committed; the results folder is).

Nothing is trained here, and every number in the tables comes from the stages' results files, found through their
records. The one measurement the report makes itself is the t-SNE and A-distance of a model whose run did not
record them (a teacher, a compressed student), from the model file its record names; it is cached in that run
folder (``features.py``).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..tables import write_table
from ..utils import atomic_write_text, fail, machine_info, machine_label, read_json, write_json
from . import tables
from .collect import Collected, Stage, collect
from .findings import limitations, what_helped_lines
from .html import to_html
from .plots import Figure, draw_figures
from .recommended import choice_table, collect_choices, copy_choices

PROTOCOL = ("Source-only and adaptation runs never read a target label (unlabeled target batches carry label -1); "
            "the last epoch is reported, no checkpoint selection. The oracle trains on labeled target-train with the "
            "same epochs and iterations. Compression calibrates and fine-tunes on unlabeled target images only. Each "
            "artifact's accuracy is measured by running that artifact.")


# ----------------------------------------------------------------------------- copies of the inputs
def copy_run_records(c: Collected, out: Path) -> int:
    """Every stage's record, results file and history (bench: its Markdown/CSV tables too) under ``out/runs/``,
    in the tree's layout, and the grid's stage log. Returns the number of files copied."""
    files = {c.base / ".stages.jsonl": out / "runs" / "stages.jsonl"}
    for s in c.stages:
        rel = s.run_dir.relative_to(c.base)
        results = s.run_dir / s.rec.results
        for p in (s.run_dir / "record.json", results, s.run_dir / "history.csv",
                  results.with_suffix(".md"), results.with_suffix(".csv")):
            files[p] = out / "runs" / rel / p.name
    n = 0
    for src, dst in files.items():
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # follows a linked run folder: the copy is a real file
            n += 1
    return n


def copy_deploy_tables(c: Collected, out: Path) -> None:
    """Each bench stage's own table (machine included) as ``out/deploy/<task>_<deployed run>_s<seed>.*``."""
    by_dir = {s.run_dir.resolve(): s for s in c.stages}
    for s in (s for s in c.stages if s.rec.kind == "bench"):
        parent = by_dir.get(s.rec.parent(s.run_dir, "model").resolve()) if "model" in s.rec.parents else None
        stem = f"{s.rec.task}_{parent.rec.name if parent else s.rec.name}_s{s.rec.seed}"
        results = s.run_dir / s.rec.results
        for src in (results, results.with_suffix(".md"), results.with_suffix(".csv")):
            if src.is_file():
                (out / "deploy").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / "deploy" / f"{stem}{src.suffix}")


# ----------------------------------------------------------------------------- the report
def _setup(c: Collected, runs_root: Path, out: Path, seeds: Sequence[int]) -> str:
    trained = [s for s in c.stages if s.rec.kind in ("source_only", "adapt", "oracle", "distill")]
    protocol = sorted({s.rec.dataset.protocol for s in trained}) or ["heldout"]
    weights = sorted({s.rec.weights for s in trained if s.rec.weights}) or ["?"]
    epochs = sorted({s.results["epochs"] for s in trained if s.results.get("epochs")})
    teachers = tables.teachers_used(c.runs)
    return (f"Dataset **{c.dataset}**, protocol **{', '.join(protocol)}** (held-out: train on source-train + "
            f"unlabeled target-train, report target-test), epochs {', '.join(map(str, epochs)) or '–'}, seeds "
            f"{', '.join(map(str, seeds))}. Weights: {'; '.join(weights)}. Training machine: "
            f"{'; '.join(_machines(trained))}. "
            + (f"Distilled student's teacher: {'; '.join(teachers)}. " if teachers else "")
            + f"Regenerate: `make report` (or `liteda report --runs {runs_root} --dataset {c.dataset} --out {out}`).")


def _machines(stages: Sequence[Stage]) -> list[str]:
    return sorted({machine_label(s.results["machine"]) for s in stages if s.results.get("machine")}) \
        or [machine_label(machine_info())]


def _md(table: str, empty: str = "No rows yet.") -> str:
    return table if table.count("\n") > 2 else empty


def _failures(base: Path) -> str:
    """What the last grid run could not finish, and why (``liteda grid`` writes it; the rows above are the
    stages that did finish)."""
    path = base / "grid_failures.json"
    failures = read_json(path) if path.is_file() else []
    if not failures:
        return "None: every planned stage finished." if path.is_file() else "No grid run recorded."
    return "\n".join(f"- {f['stage']}: {'skipped, ' if f.get('skipped') else ''}{f['why']}" for f in failures)


def _collapsed(runs: Sequence[dict], labels: dict) -> str:
    """Runs whose target predictions fell into one class (the label-free check every training stage records):
    their accuracies above are not adaptation results."""
    bad = [r for r in runs if (r.get("collapse") or {}).get("collapsed")]
    if not bad:
        return "None: no trained model predicts one class for (nearly) every target image."
    return "\n".join(f"- {labels.get(r['method'], r['method'])}, {r['task']} seed {r['seed']}: "
                     f"{r['collapse']['majority_share']:.0%} of target predictions in one class" for r in bad)


def build(runs_root: str | Path, dataset: str, out: str | Path) -> dict:
    """Collect every stage under ``<runs_root>/<dataset>`` and write the results folder ``out``."""
    runs_root, out = Path(runs_root), Path(out)
    c = collect(runs_root, dataset)
    if not c.stages:
        fail(f"no finished stage (record.json) under '{c.base}'")
    out.mkdir(parents=True, exist_ok=True)
    copy_run_records(c, out)
    copy_deploy_tables(c, out)
    rows, order, labels = c.rows, c.order, c.labels
    seeds = sorted({s.rec.seed for s in c.stages})

    headline = tables.headline_table(rows, order, labels)
    accuracy = tables.accuracy_table(rows, order, labels)
    md_headline = write_table(out / "headline", *headline)
    md_oracle = write_table(out / "against_oracle", *tables.oracle_margin_table(rows, order, labels))
    md_stages = write_table(out / "stages", *tables.stages_table(c.stages, order))
    md_acc = write_table(out / "accuracy", *accuracy)
    md_seed = write_table(out / "accuracy_per_seed", *tables.per_seed_table(rows, order, labels))
    md_all = write_table(out / "accuracy_all_target",
                         *tables.accuracy_table(rows, order, labels, tables.target_all_acc))
    md_sec = write_table(out / "seconds_per_epoch",
                         *tables.accuracy_table(rows, order, labels, tables.seconds_per_epoch))
    md_res = write_table(out / "resources", *tables.resource_table(rows, order, labels))
    metrics = tables.metrics_table(rows, order, labels)
    md_metrics = write_table(out / "metrics", *metrics)
    write_table(out / "metrics_per_task", *tables.metrics_by_task(rows, order, labels))
    artifacts = tables.artifact_table(c.bench, order)
    md_art = write_table(out / "artifacts", *artifacts)
    summary_comp = tables.compression_summary(c.compressed, order, labels)
    md_comp = write_table(out / "compression_summary", *summary_comp)
    md_val = write_table(out / "validators", *tables.validator_table(c.runs, order))
    md_agree = write_table(out / "validator_agreement", *tables.validator_agreement(c.runs))
    compression = []
    for key in (k for k in order if any(r["method"] == k for r in c.compressed)):
        comp = [r for r in c.compressed if r["method"] == key]
        recipe = ", ".join(comp[0]["techniques"]) or "–"
        compression += [f"### {labels[key]} (`{key}`)", f"Recipe: {recipe}.", "",
                        write_table(out / f"compression_{key}", *tables.compression_table(comp, c.bench))]
    choices = collect_choices(c.base)
    copy_choices(choices, out)
    md_chosen = write_table(out / "recommended", *choice_table(choices)) if choices else ""
    figures, notes = draw_figures(c, out)

    md = "\n".join([
        f"# LiteDA report — {dataset}", "",
        "## Headline", "Target-test accuracy (%) of the student without adaptation, with each adaptation method, "
        "distilled, and deployed as a file from a compressed model, beside the oracle trained with target labels; "
        "mean ± std over seeds. Size: the model file (the deployed file for deployed rows); latency: batch-1 p50 "
        "of that file (machine in `deploy/`).", "", md_headline,
        "### Against the oracle", "Each row minus the oracle on the same task and seed (points), mean ± std over "
        "seeds; worst task: the task where the row is furthest below the oracle, mean over seeds.", "",
        _md(md_oracle, "No oracle run yet."),
        *(["### The artifact to ship", "Per task and seed, `liteda recommend`'s label-free choice across the "
           "distilled student's benchmarked runs (the student and every recipe compressed from it): the fastest "
           "artifact, timed interleaved, whose top-1 agreement with the float student on unlabeled target images is "
           "at least the threshold. Its target-test accuracy is read afterwards, beside the float student's "
           "(`recommended/<task>_s<seed>.md` lists every candidate).", "", md_chosen] if choices else []),
        "## Setup", _setup(c, runs_root, out, seeds), "",
        "## Protocol", PROTOCOL, "",
        "## Stages", "Every stage record in the runs tree: what ran, from which parent, and what it wrote.", "",
        md_stages,
        "## Target-test accuracy (%)", _md(md_acc),
        "Average over the tasks, per seed (seeds with every task):", "", _md(md_seed),
        "## Target-test metrics", "Average over the tasks, mean ± std over seeds: accuracy, cross-entropy loss, macro "
        "precision, recall and F1, and the agreement of predicted with true classes as clusterings (normalised mutual "
        "information, Rand index, adjusted Rand index). Deployed rows: the metrics of that file where its bench "
        "recorded them. Per task: `metrics_per_task.md`; per seed: each run's `results.json`.", "",
        _md(md_metrics),
        "## Accuracy on all target images (%)", "The same models scored on every target image (train + test split), "
        "the number tllib's transductive tables report; target-train images were seen unlabeled in training (by the "
        "oracle with their labels: its row here is partly training accuracy).", "", _md(md_all),
        "## Training seconds per epoch", f"Machine: {'; '.join(_machines(c.stages))}.", "", _md(md_sec),
        "## Resources", _md(md_res), "### Deployed artifacts", "Each artifact's accuracy is that file's, run by its "
        "runtime; size, latency and throughput are means over tasks and seeds.", "", _md(md_art, "No bench stage yet."),
        "## Compression, stage by stage", "Target-test accuracy (%) of the model a compress stage starts from, after "
        "each of its steps (each followed by its recovery fine-tune on unlabeled target images), and of the "
        "compressed model's ONNX Runtime files.", "", _md(md_comp, ""),
        *(compression or ["No compress stage yet."]), "",
        "## Label-free validators vs target accuracy", "Computed from target predictions only (no labels); higher "
        "should mean better adaptation. Use them, not target accuracy, to choose a method or teacher.", "",
        _md(md_val),
        "How well each validator ranks a task's trained runs (rank correlation with target-test accuracy; the run it "
        "would pick and that run's accuracy, vs the best run; computed afterwards, with labels):", "",
        _md(md_agree, "Fewer than three trained runs per task and seed: nothing to rank."),
        "## What helped and what did not", tables.what_helped(rows, order, labels),
        *(f"- {line}" for line in what_helped_lines(c)), "",
        "## Limitations", "\n".join(f"- {line}" for line in limitations(c, notes)) or "None recorded.", "",
        "## Stages that did not finish", _failures(c.base), "",
        "## Collapsed models", _collapsed(c.runs, labels), "",
    ])
    plots = "\n".join(f"### {f.caption}\n![{f.caption}]({f.path.relative_to(out).as_posix()})" for f in figures)
    atomic_write_text(out / "report.md", md + "\n## Plots\n" + plots + "\n")
    atomic_write_text(out / "report.html", to_html(md, [(f.caption, f.path) for f in figures],
                                                   f"LiteDA report — {dataset}"))
    pages = write_written_report(c, headline, metrics, artifacts, summary_comp, figures, notes, out)
    summary = {"schema": "liteda.report/1", "machine": machine_info(), "dataset": dataset, "seeds": seeds,
               "weights": sorted({s.rec.weights for s in c.stages if s.rec.weights}),
               "stages": [{"kind": s.rec.kind, "name": s.rec.name, "label": s.rec.label, "task": s.rec.task,
                           "seed": s.rec.seed, "run": s.run_dir.relative_to(c.base).as_posix()} for s in c.stages],
               "headline": {"header": headline[0], "rows": headline[1]},
               "accuracy": {"header": accuracy[0], "rows": accuracy[1]}, "n_runs": len(c.stages),
               "figures": [f.path.relative_to(out).as_posix() for f in figures], "pdf_pages": pages}
    write_json(out / "summary.json", summary)
    print(md_headline)
    print(f"report: {out / 'report.html'}, {out / 'report.md'}" + (f" and {out / 'report.pdf'}" if pages else ""))
    return summary


def write_written_report(c: Collected, headline, metrics, artifacts, compression, figures: Sequence[Figure],
                         notes: Sequence[str], out: Path) -> Optional[int]:
    """``report.pdf``; its page count, or None with one warning line when no PDF library is installed (the
    Markdown and HTML reports are written either way)."""
    from .document import written_report

    try:
        from .pdf import write_pdf

        return write_pdf(written_report(c, headline, metrics, artifacts, compression, figures, notes),
                         out / "report.pdf")
    except ImportError as e:
        print(f"report: warning: report.pdf not written: {e.name or e} is not installed (pip install fpdf2)",
              file=sys.stderr)
        return None
