"""Two compression runs of the same distilled students, side by side: what each one's deployed file scores and
what its label-free checks said.

    python benchmarks/compare_compress_runs.py RUNS_TREE --a 1mb --b 1mb_kl --out benchmarks/studies/X/ft_guard_views

For every ``<dataset>/<task>/<A>/seed<k>`` that has a ``<task>/<B>/seed<k>`` (both compressed from the same
parent), per task and seed: the accuracy of each run's float model before static INT8 and of its deployed
ONNX Runtime file (its ``deploy`` bench stage, row ``--artifact``), the parent's target-test accuracy, each float stage's recovery fine-tune guard (kept or
undone, with the label-free figures it compared) and the KL to the parent on strong target-train views that the
compression log records for the final (quantized) model, and each side's INT8 step (kind, weight bits). Target-test accuracies are read from the runs' results, only to report. Writes
``<out>.{md,csv,json}``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from liteda.compress.quantize import op_weight_bits
from liteda.record import FILENAME, read_record, results_of
from liteda.tables import order_tasks, write_table
from liteda.utils import atomic_write_text, fail, machine_label, run_cli, write_json


def file_accuracy(run: Path, artifact: str) -> tuple[float | None, dict | None]:
    """The accuracy of the run's deployed file, read through its bench stage's record (None: not benched), and
    the machine that ran it."""
    deploy = run / "deploy"
    if not (deploy / FILENAME).is_file():
        return None, None
    doc = results_of(deploy)
    rows = [r for r in doc["rows"] if r["name"] == artifact]
    return (rows[0]["acc"] if rows else None), doc.get("machine")


def float_accuracy(res: dict) -> float | None:
    """Target-test accuracy of the float model that static INT8 started from (the last stage before it)."""
    floats = [st for st in res["stages"] if st["op"] != "quantize"]
    return floats[-1]["target_test_acc"] if floats else None


def guards(res: dict) -> str:
    """``kept``/``undone`` per guarded stage, with the criterion's before -> after."""
    out = []
    for stage in res["stages"]:
        for row in stage.get("finetune", []):
            g = row.get("ft_guard") if isinstance(row, dict) else None
            if g:
                crit = g.get("criterion", "agree")
                out.append(f"{stage['op']} {'kept' if g['kept'] else 'undone'} ({crit} "
                           f"{g[f'{crit}_before']:.3g} → {g[f'{crit}_after']:.3g})")
    return "; ".join(out) or "–"


def final_kl(res: dict) -> float | None:
    """The KL to the parent on strong target-train views that the compression logged last (the final model)."""
    return next((s.get("target_train_kl_strong") for s in reversed(res["stages"])
                 if s.get("target_train_kl_strong") is not None), None)


def quantization(res: dict) -> str:
    """The INT8 step as run: its kind and weight range."""
    q = next((s for s in res["stages"] if s["op"] == "quantize"), None)
    return "–" if q is None else f"{q.get('kind', '?')} {op_weight_bits(q)}-bit"


def pair_row(task: str, seed: int, a: Path, b: Path, artifact: str) -> dict:
    ra, rb = results_of(a, read_record(a)), results_of(b, read_record(b))
    if ra["run"] != rb["run"]:
        fail(f"'{a}' and '{b}' were compressed from different runs ({ra['run']} vs {rb['run']})")
    (fa, machine), (fb, _) = file_accuracy(a, artifact), file_accuracy(b, artifact)
    return {"task": task, "seed": seed, "parent_acc": ra["before"]["target_test"]["acc"],
            "a_float_acc": float_accuracy(ra), "b_float_acc": float_accuracy(rb),
            "a_file_acc": fa, "b_file_acc": fb, "machine": machine,
            "a_guard": guards(ra), "b_guard": guards(rb), "a_quant": quantization(ra), "b_quant": quantization(rb),
            "a_kl_strong": final_kl(ra), "b_kl_strong": final_kl(rb)}


def mean_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.fmean(values) if values else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="a runs tree (<dataset>/<task>/<run>/seed<k>)")
    ap.add_argument("--a", required=True, help="run name of the first compression")
    ap.add_argument("--b", required=True, help="run name of the second compression")
    ap.add_argument("--dataset", default="OfficeCaltech")
    ap.add_argument("--artifact", default="ort-int8", help="the bench row whose accuracy is the file's")
    ap.add_argument("--out", type=Path, required=True, help="output stem (no extension)")
    args = ap.parse_args(argv)
    root = args.runs / args.dataset
    if not root.is_dir():
        fail(f"'{root}' is not a folder (give a runs tree and --dataset)")
    found = {(t.name, int(s.name.removeprefix("seed"))): s for t in root.iterdir() if (t / args.a).is_dir()
             for s in (t / args.a).glob("seed*") if (t / args.b / s.name / "record.json").is_file()}
    if not found:
        fail(f"no task under '{root}' has both '{args.a}' and '{args.b}' runs of one seed")
    order = order_tasks(t for t, _ in found)
    rows = [pair_row(t, k, found[(t, k)], root / t / args.b / f"seed{k}", args.artifact)
            for t, k in sorted(found, key=lambda tk: (order.index(tk[0]), tk[1]))]
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    header = ["task", "seed", "student", f"{args.a} float", f"{args.b} float", f"{args.a} file", f"{args.b} file",
              f"{args.b} − {args.a}",
              f"{args.a} guard", f"{args.b} guard", f"{args.a} INT8", f"{args.b} INT8",
              f"{args.a} KL, strong views", f"{args.b} KL, strong views"]
    kl = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    body = [[r["task"], str(r["seed"]), fmt(r["parent_acc"]), fmt(r["a_float_acc"]), fmt(r["b_float_acc"]),
             fmt(r["a_file_acc"]), fmt(r["b_file_acc"]),
             "–" if None in (r["a_file_acc"], r["b_file_acc"]) else f"{r['b_file_acc'] - r['a_file_acc']:+.1f}",
             r["a_guard"], r["b_guard"], r["a_quant"], r["b_quant"], kl(r["a_kl_strong"]), kl(r["b_kl_strong"])]
            for r in rows]
    both = [r for r in rows if None not in (r["a_file_acc"], r["b_file_acc"])]
    mean = lambda k: statistics.fmean(r[k] for r in both) if both else None  # noqa: E731
    if both:
        body.append([f"mean ({len(both)} runs)", "", fmt(mean("parent_acc")), "", "", fmt(mean("a_file_acc")),
                     fmt(mean("b_file_acc")), f"{mean('b_file_acc') - mean('a_file_acc'):+.2f}", "", "", "", "",
                     kl(mean_of(both, "a_kl_strong")), kl(mean_of(both, "b_kl_strong"))])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = write_table(args.out, header, body)
    command = "python benchmarks/compare_compress_runs.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = next((machine_label(r["machine"]) for r in rows if r["machine"]), "–")
    atomic_write_text(args.out.with_suffix(".md"), f"Machine (benchmarks): {machine}. Command: `{command}`\n\n"
                      f"Target-test accuracy %, of each deployed file run by `liteda bench`.\n\n{md}")
    write_json(args.out.with_suffix(".json"), {"schema": "liteda.compare_compress_runs/1", "command": command,
                                               "a": args.a, "b": args.b, "rows": rows})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
