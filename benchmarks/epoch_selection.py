"""Would a label-free choice of epoch have kept a better model than the last epoch? Per run, from its history.csv:

    python benchmarks/epoch_selection.py --runs 'teacher=RUNS/OfficeCaltech/A2W/mcc-tf_efficientnet_lite0/seed*' \\
        --out benchmarks/studies/X/epoch_selection

For each run folder: the last epoch's target-test accuracy, the epoch with the highest IM score and its
accuracy, and (hindsight, never a choice) the best epoch's. The IM score is read from the unlabeled target-train
images where the run logged it (``target_train_im_score``: ``--select im`` runs), else from the target-test
images' predictions (``target_test_im_score``, logged by every run; no label, but the test images), and the
table says which. Target labels are read here only to report. Writes <out>.{md,csv,json}.
"""
from __future__ import annotations

import argparse
import csv
import glob
import shlex
import statistics
import sys
from pathlib import Path

from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, read_json, run_cli, write_json


def selection(run: Path) -> dict:
    hist = run / "history.csv"
    if not hist.is_file():
        fail(f"'{hist}' does not exist (a finished run folder is needed)")
    rows = list(csv.DictReader(hist.open()))
    if not rows:
        fail(f"'{hist}' has no epoch")
    key = "target_train_im_score" if rows[0].get("target_train_im_score") else "target_test_im_score"
    acc = [float(r["target_test_acc"]) for r in rows]
    im = [float(r[key]) for r in rows]
    pick = max(range(len(rows)), key=lambda i: im[i])
    best = max(range(len(rows)), key=lambda i: acc[i])
    res = read_json(run / "results.json") if (run / "results.json").is_file() else {}
    return {"run": str(run), "task": res.get("task", "?"), "seed": res.get("seed", "?"), "epochs": len(rows),
            "last_acc": acc[-1], "im_images": "target-train" if key.startswith("target_train") else "target-test",
            "im_epoch": pick + 1, "im_acc": acc[pick], "best_epoch": best + 1, "best_acc": acc[best]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", action="append", required=True, metavar="NAME=GLOB",
                   help="a name and the glob of its run folders (repeatable)")
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    a = p.parse_args(argv)
    out, header = [], ["runs", "task", "seed", "last epoch acc %", "IM on", "IM epoch", "IM epoch acc %",
                       "best epoch (hindsight)", "best acc %"]
    body = []
    for spec in a.runs:
        name, sep, pattern = spec.partition("=")
        runs = sorted(Path(x) for x in glob.glob(pattern)) if sep and name else []
        if not runs:
            fail(f"--runs '{spec}': expected NAME=GLOB matching run folders")
        sel = [dict(selection(r), name=name) for r in runs]
        out += sel
        body += [[name, s["task"], f"s{s['seed']}", f"{s['last_acc']:.1f}", s["im_images"], str(s["im_epoch"]),
                  f"{s['im_acc']:.1f}", str(s["best_epoch"]), f"{s['best_acc']:.1f}"] for s in sel]
        mean = lambda k: f"{statistics.fmean(s[k] for s in sel):.1f}"  # noqa: E731
        body.append([name, "mean", "", mean("last_acc"), "", "", mean("im_acc"), "", mean("best_acc")])
    md = write_table(Path(a.out), header, body)
    cmd = "python benchmarks/epoch_selection.py " + " ".join(f"--runs {shlex.quote(r)}" for r in a.runs)
    write_json(Path(a.out).with_suffix(".json"), {"command": f"{cmd} --out {a.out}", "runs": out})
    atomic_write_text(Path(a.out).with_suffix(".md"),
                      f"# Last epoch against the IM-selected epoch\n\nRegenerate: `{cmd} --out {a.out}`\n\n"
                      "Target-test accuracy of each epoch's model (from the run's history.csv); the IM epoch is "
                      "the one with the highest IM score on the images the `IM on` column names (no label); the "
                      "best epoch is hindsight, for reference only.\n\n" + md + "\n")
    print(md)
    return {"runs": out}


if __name__ == "__main__":
    sys.exit(run_cli(main))
