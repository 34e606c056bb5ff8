"""Which low-rank plan keeps the student's predictions best, before any fine-tune? A label-free comparison.

For one adapted student: every (allocation x whitening) combination at the same parameter ratio, measured by
top-1 agreement with the uncompressed student on a held-out half of unlabeled target-train (the whitening
statistics come from two augmented passes over source-train plus the other half, as compress.py takes them from
source-train and all of target-train), and by the relative output error there. Target-test accuracy is reported
beside it, never used to choose. -> <results>/lowrank_alloc_<task>.{json,md}

    python benchmarks/lowrank_alloc.py ../shared/datasets/office_caltech_10 -d OfficeCaltech -s W -t A \\
        --ckpt runs_e30_lite0mcc/OfficeCaltech/W2A/kd/seed0/model.pt --ratio 0.25 --layers linear+se
    python benchmarks/lowrank_alloc.py --table benchmarks/results/<chain>/lowrank_alloc   # plan x task summary
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch


from liteda.utils import atomic_write_text, benchmark_parser, machine_label, run_cli, write_json

# (allocation, whitening, statistics): "src+tgt" = compress.py's (two augmented source-train passes + target-train
# images), "tgt" = the target-train half alone (a few hundred images for up to 1024-dimensional inputs)
COMBOS = ([(a, w, "src+tgt") for a in ("uniform", "global") for w in ("none", "diag", "full")]
          + [("uniform", "full", "tgt")])


def parse(argv):
    p = benchmark_parser(__doc__)
    p.add_argument("--ratio", type=float, default=0.25)
    p.add_argument("--layers", default="linear+se")
    p.add_argument("--results", default="benchmarks/results")
    return p.parse_args(argv)


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
    if argv[:1] == ["--table"] and len(argv) == 2:
        print(summary(Path(argv[1])))
        return {}
    from liteda.compress.lowrank import layer_selection, lowrank_model
    from liteda.compress.pipeline import build_data, build_parser, evaluate, load_input
    from liteda.metrics import count_params

    a = parse(argv)
    cargs = build_parser().parse_args([a.root, "-d", a.data, "-s", a.source, "-t", a.target, "--ckpt", a.ckpt,
                                       "--no-progress"])
    model, rec, run_dir, _ = load_input(Path(a.ckpt))
    data = build_data(cargs, run_dir, rec)
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
               "target_test_acc": evaluate(m, data)["acc"],
               "ranks": {k: v["ranks"][0] for k, v in plan.items()}}
        rows.append(row)
        print(f"{alloc:8s} {whiten:5s} {row['statistics']:8s} params {row['params']:,} "
              f"agree {row['held_out_agree']:.1f} "
              f"rel.err {row['held_out_rel_err']:.3f} (test acc {row['target_test_acc']:.1f})", flush=True)
    task = f"{a.source}2{a.target}"
    header = (f"Low-rank plans for `{a.ckpt}` ({a.data} {task}), ratio {a.ratio}, layers {a.layers}, no fine-tune; "
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
