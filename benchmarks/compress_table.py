"""Six-task compression table from the per-task files of ``bench_compress.py``: technique x task.

    python benchmarks/compress_table.py benchmarks/studies/officecaltech_e30_lite0mcc/compress_bench

Reads every ``compress_<task>.json`` in the folder and writes ``compress_all_tasks.{md,csv}`` there: the
target-test accuracy change of each technique against the uncompressed student of the same task, per task and
on average, beside the technique's average parameters, MACs, file size and bs1 latency. Nothing is re-run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from liteda.tables import order_tasks, to_csv, to_markdown
from liteda.utils import atomic_write_text, fail, read_json, run_cli


def load_tasks(folder: Path) -> dict[str, dict]:
    files = sorted(folder.glob("compress_*.json"))
    if not files:
        fail(f"no compress_<task>.json in '{folder}' (run benchmarks/bench_compress.py first)")
    docs = {f.stem.removeprefix("compress_"): read_json(f) for f in files}
    return {t: docs[t] for t in order_tasks(docs)}


def technique_table(tasks: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Rows in the order the benchmark ran them; a technique missing on a task shows '–', and its average over the
    tasks it ran on is labelled with their count, e.g. ``-1.20 (4/6)``."""
    names: list[str] = []
    cell: dict[tuple[str, str], dict] = {}
    for task, doc in tasks.items():
        for r in doc["rows"]:
            names += [r["technique"]] if r["technique"] not in names else []
            cell[(r["technique"], task)] = r
    header = (["technique"] + [f"{t[0]}→{t[-1]}" if len(t) == 3 else t for t in tasks]
              + ["Avg Δ", "params", "MACs (M)", "file MB", "INT8 ONNX MB", "latency ms"])
    body = []
    for n in names:
        rows = [cell.get((n, t)) for t in tasks]
        full = all(r is not None for r in rows)
        base = n == "uncompressed student"
        per_task = ["–" if r is None else (f"{r['target_test_acc']:.1f}" if base else f"{r['delta_acc']:+.1f}")
                    for r in rows]
        got = [r for r in rows if r is not None]
        mean = lambda k: statistics.fmean(r[k] for r in got) if got and all(r.get(k) is not None for r in got) else None  # noqa: E731
        avg = f"{mean('target_test_acc'):.1f}" if base and full else f"{mean('delta_acc'):+.2f}" if got and not base else "–"
        avg += f" ({len(got)}/{len(rows)})" if got and not full and avg != "–" else ""  # over fewer tasks: say so
        body.append([n, *per_task, avg,
                     "–" if mean("params") is None else f"{mean('params') / 1e6:.3f} M",
                     "–" if mean("macs") is None else f"{mean('macs') / 1e6:.1f}",
                     "–" if mean("file_mb") is None else f"{mean('file_mb'):.2f}",
                     "–" if mean("onnx_int8_mb") is None else f"{mean('onnx_int8_mb'):.3f}",
                     "–" if mean("latency_ms_p50") is None else f"{mean('latency_ms_p50'):.2f}"])
    return header, body


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="the --results folder of bench_compress.py")
    folder = Path(p.parse_args(argv).folder)
    tasks = load_tasks(folder)
    header, body = technique_table(tasks)
    heads = sorted({d["header"].split(";", 1)[1].strip() for d in tasks.values()})
    md = (f"# Compression techniques on {len(tasks)} tasks\n\nTarget-test accuracy of the uncompressed student (%), "
          f"then each technique's change against it (pt); averages over the tasks of the other columns. "
          f"Per-task files: compress_<task>.md. Settings: {' | '.join(heads)}.\n"
          f"Regenerate: `python benchmarks/compress_table.py {folder}`\n\n" + to_markdown(header, body))
    atomic_write_text(folder / "compress_all_tasks.md", md)
    atomic_write_text(folder / "compress_all_tasks.csv", to_csv(header, body))
    print(md)


if __name__ == "__main__":
    sys.exit(run_cli(main))
