"""Which low-rank plan keeps the student's predictions best, before any fine-tune? A label-free comparison.

For one adapted student: every (allocation x whitening) combination at the same parameter ratio, measured by
top-1 agreement with the uncompressed student on a held-out half of unlabeled target-train (the whitening
statistics come from two augmented passes over source-train plus the other half, as ``liteda compress`` takes
them from source-train and all of target-train), and by the relative output error there. Target-test accuracy is
reported beside it, never used to choose. -> <results>/lowrank_alloc_<task>.{json,md}

    python benchmarks/lowrank_alloc.py --run runs/OfficeCaltech/W2A/kd/seed0 --ratio 0.25 --layers linear+se
    python benchmarks/lowrank_alloc.py --table benchmarks/studies/<study>/lowrank_alloc   # plan x task summary
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from liteda.settings import cache_dir
from liteda.utils import atomic_write_text, machine_label, run_cli, write_json

# (allocation, whitening, statistics): "src+tgt" = liteda compress's (two augmented source-train passes + target-train
# images), "tgt" = the target-train half alone (a few hundred images for up to 1024-dimensional inputs)
COMBOS = ([(a, w, "src+tgt") for a in ("uniform", "global") for w in ("none", "diag", "full")]
          + [("uniform", "full", "tgt")])


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished run folder (a training run or a float compression run)")
    p.add_argument("--table", metavar="FOLDER", help="instead: the plan x task summary of a --results folder")
    p.add_argument("--ratio", type=float, default=0.25)
    p.add_argument("--layers", default="linear+se")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=cache_dir(), help="decoded-image cache")
    p.add_argument("--results", default="benchmarks/results")
    a = p.parse_args(argv)
    if (a.run is None) == (a.table is None):
        p.error("give one of --run and --table")
    return a


@torch.no_grad()
def logits_of(model, batches) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x) for x in batches])


def summary(folder: Path) -> str:
    """Plan x task: held-out agreement (and target-test accuracy, reported only) from every per-task JSON."""
    from liteda.tables import order_tasks
    from liteda.utils import fail, read_json

    docs = {f.stem.removeprefix("lowrank_alloc_"): read_json(f) for f in sorted(folder.glob("lowrank_alloc_*.json"))
            if not f.stem.endswith("all_tasks")}
    if not docs:
        fail(f"no lowrank_alloc_<task>.json in '{folder}'")
    tasks = order_tasks(docs)
    plans = list(dict.fromkeys((r["allocation"], r["whiten"], r["statistics"]) for t in tasks for r in docs[t]["rows"]))
    cell = {(t, (r["allocation"], r["whiten"], r["statistics"])): r for t in tasks for r in docs[t]["rows"]}
    lines = ["Held-out target-train top-1 agreement with the uncompressed student (%), no fine-tune; in brackets the "
             "average target-test accuracy (reported, not used to choose). Per-task files: lowrank_alloc_<task>.md.",
             "", "| allocation | whiten | statistics | " + " | ".join(tasks) + " | Avg agree | Avg test acc |",
             "|" + "---|" * (len(tasks) + 5)]
    for k in plans:
        rows = [cell[(t, k)] for t in tasks if (t, k) in cell]
        agree = [f"{cell[(t, k)]['held_out_agree']:.1f}" if (t, k) in cell else "–" for t in tasks]
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(agree) +
                     f" | {sum(r['held_out_agree'] for r in rows) / len(rows):.1f} | "
                     f"({sum(r['target_test_acc'] for r in rows) / len(rows):.1f}) |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(folder / "lowrank_alloc_all_tasks.md", text)
    return text


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    if a.table:
        print(summary(Path(a.table)))
        return {}
    from liteda.compress.lowrank import layer_selection, lowrank_model
    from liteda.compress.measure import evaluate
    from liteda.compress.parent import load_parent
    from liteda.compress.pipeline import build_data
    from liteda.metrics import count_params

    parent = load_parent(a.run)
    model, rec = parent.model, parent.record
    data = build_data(rec, parent.run, parent.base["num_classes"], a.batch_size, a.cache_dir, progress=False)
    batches = [x for x, _ in data.calibration]
    held = batches[len(batches) // 2:]
    target_half = batches[: len(batches) // 2]
    fit = [x for _ in range(2) for x, _ in data.labeled] + target_half
    ref = logits_of(model, held)
    rows = []
    for alloc, whiten, stats in COMBOS:
        m = copy.deepcopy(model)
        plan = lowrank_model(m, ratio=a.ratio, select=layer_selection(m, a.layers), allocation=alloc, whiten=whiten,
                             batches=fit if stats == "src+tgt" else target_half)
        out = logits_of(m, held)
        row = {"allocation": alloc, "whiten": whiten, "statistics": stats if whiten != "none" else "-",
               "params": count_params(m),
               "held_out_agree": float((out.argmax(1) == ref.argmax(1)).float().mean() * 100),
               "held_out_rel_err": float((out - ref).norm() / ref.norm()),
               "target_test_acc": evaluate(m, data.target_test, data.num_classes)["acc"],
               "ranks": {k: v["ranks"][0] for k, v in plan.items()}}
        rows.append(row)
        print(f"{alloc:8s} {whiten:5s} {row['statistics']:8s} params {row['params']:,} "
              f"agree {row['held_out_agree']:.1f} "
              f"rel.err {row['held_out_rel_err']:.3f} (test acc {row['target_test_acc']:.1f})", flush=True)
    task = rec.task
    header = (f"Low-rank plans for `{a.run}` ({rec.dataset.name} {task}, {rec.label}), ratio {a.ratio}, layers "
              f"{a.layers}, no fine-tune; "
              f"statistics on {sum(len(x) for x in fit)} images (source-train augmented, twice; half of target-train), "
              f"agreement on the other {sum(len(x) for x in held)} target-train images; {machine_label()}. "
              "Target-test accuracy is reported, not used to choose.")
    lines = [header, "", "| allocation | whiten | statistics | params | held-out agree % | held-out rel. logit err | "
             "target-test acc |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['allocation']} | {r['whiten']} | {r['statistics']} | {r['params']:,} | "
              f"{r['held_out_agree']:.1f} | "
              f"{r['held_out_rel_err']:.3f} | {r['target_test_acc']:.1f} |" for r in rows]
    res = Path(a.results)
    write_json(res / f"lowrank_alloc_{task}.json", {"header": header, "rows": rows, "argv": argv or sys.argv[1:]})
    atomic_write_text(res / f"lowrank_alloc_{task}.md", "\n".join(lines) + "\n")
    return {"rows": rows}


if __name__ == "__main__":
    sys.exit(run_cli(main))
