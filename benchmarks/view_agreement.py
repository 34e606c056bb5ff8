"""Does a compressed model's label-free agreement with its float student see the accuracy compression cost?

    python benchmarks/view_agreement.py COMPRESS_RUN [COMPRESS_RUN ...] --out benchmarks/results/view_agreement

For each compress run, the compressed model and the float model it descends from (the trained run its records'
``model`` parents lead to) label the run's unlabeled target-train images under three views, the same random view
fed to both (made at the float model's input size and resized for a compressed model of another size):
``plain``, the test transform (the agreement ``liteda compress`` and ``liteda bench`` record); ``weak``, random
resized crops (scale 0.5-1) and flips; ``strong``, FixMatch's strong views (RandAugment + cutout). Beside them,
the target-test accuracy the compression cost (from the run's results, read only to report), and over all runs
the rank correlation of each view's agreement with that cost. Writes <out>.{json,md,csv}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from liteda.compress.fidelity import view_transform
from liteda.datasets import load_images, read_image_list
from liteda.deploy.inputs import load_model, trained_ancestor
from liteda.record import read_record, results_of
from liteda.report.tables import spearman
from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, machine_info, machine_label, run_cli, write_json

VIEWS = ("plain", "weak", "strong")


def measure(run_dir: Path, draws: int, batch: int = 64) -> dict:
    rec = read_record(run_dir)
    ancestor = trained_ancestor(run_dir, rec) if rec.kind == "compress" else None
    if ancestor is None:
        fail(f"'{run_dir}' is not a compress run whose trained model is still there (its record's model parents)")
    small, _, _ = load_model(run_dir, rec)
    parent, prec = ancestor
    big, _, _ = load_model(parent, prec)
    ds, tf = rec.dataset, prec.transform  # views at the float model's size
    size = rec.transform.crop
    train = read_image_list(rec.splits_dir(run_dir) / f"{ds.target}_train.txt", ds.root)
    images, _ = load_images(ds.root, [(p, -1) for p, _ in train], tf.resize)  # labels never loaded
    torch.manual_seed(0)
    row = {"task": rec.task, "seed": rec.seed, "run": str(run_dir), "images": len(images),
           "reference": str(parent), "input_sizes": [tf.crop, size]}
    for view in VIEWS:
        tfm, same = view_transform(view, tf.crop, tf.mean, tf.std), []
        for _ in range(1 if view == "plain" else draws):
            for i in range(0, len(images), batch):
                x = torch.stack([tfm(images[j].permute(2, 0, 1)) for j in range(i, min(i + batch, len(images)))])
                xs = x if size == tf.crop else F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
                with torch.no_grad():
                    same.append(small(xs).argmax(1) == big(x).argmax(1))
        row[f"agree_{view}"] = 100.0 * torch.cat(same).float().mean().item()
    res = results_of(run_dir, rec)
    row["acc_before"] = res["before"]["target_test"]["acc"]
    row["acc_after"] = res["after"]["target_test"]["acc"]
    row["cost"] = row["acc_after"] - row["acc_before"]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="compress run folders")
    ap.add_argument("--draws", type=int, default=3, help="random views per image for weak and strong")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="output stem (no extension)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for i, run in enumerate(args.runs, 1):
        rows.append(measure(run, args.draws))
        print(f"[{i}/{len(args.runs)}] {rows[-1]['task']} s{rows[-1]['seed']}: " + ", ".join(
            f"{v} {rows[-1][f'agree_{v}']:.1f}%" for v in VIEWS) + f"; cost {rows[-1]['cost']:+.1f} pt", flush=True)
    rho = {v: spearman([r[f"agree_{v}"] for r in rows], [r["cost"] for r in rows]) for v in VIEWS}
    header = ["task", "seed", *[f"agree {v} %" for v in VIEWS], "acc before", "acc after", "cost pt"]
    body = [[r["task"], str(r["seed"]), *[f"{r[f'agree_{v}']:.1f}" for v in VIEWS], f"{r['acc_before']:.1f}",
             f"{r['acc_after']:.1f}", f"{r['cost']:+.1f}"] for r in rows]
    body.append(["Spearman with cost", "", *["–" if rho[v] is None else f"{rho[v]:+.2f}" for v in VIEWS], "", "", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = write_table(args.out, header, body)
    command = "python benchmarks/view_agreement.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write_text(args.out.with_suffix(".md"), f"Machine: {machine_label()}. Command: `{command}`\n\n{md}")
    write_json(args.out.with_suffix(".json"), {"schema": "liteda.view_agreement/1", "machine": machine_info(),
                                               "command": command, "rows": rows, "spearman": rho})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
