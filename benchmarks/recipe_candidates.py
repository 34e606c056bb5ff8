"""Candidate recipes for the distilled student, side by side, and how the label-free validators rank them:

    python benchmarks/recipe_candidates.py --candidate default=RUNS_A/OfficeCaltech/*/kd/seed* \\
        --candidate cluster0.3=RUNS_B/OfficeCaltech/*/kd_cluster0.3/seed* --out benchmarks/results/candidates

Each candidate is a name and the glob of its finished run folders (results.json + history.csv). Per task and
seed: each candidate's target-test accuracy (measured after training, never used to choose), its IM score
and SND (label-free, last epoch), and the candidate each validator picks. The recipe a user should take is the
validators' pick; the accuracy column says afterwards whether that pick was right.
"""
from __future__ import annotations

import argparse
import glob
import statistics
import sys
from pathlib import Path
from typing import Optional

from liteda.report.tables import last_history_value
from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, machine_info, machine_label, read_json, run_cli, write_json


def read_candidate(name: str, pattern: str) -> list[dict]:
    runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "results.json").is_file())
    if not runs:
        fail(f"--candidate {name}: no finished run folder matches '{pattern}'")
    out = []
    for run in runs:
        r = read_json(run / "results.json")
        out.append({"candidate": name, "task": r["task"], "seed": r["seed"], "acc": r["target_test"]["acc"],
                    "im": r["validator"]["im_score"], "snd": last_history_value(run / "history.csv", "target_test_snd"),
                    "seconds_per_epoch": r.get("timing", {}).get("seconds_per_epoch"), "run": str(run),
                    "machine": machine_label(r.get("machine") or {}),
                    "teacher_acc": [t.get("target_test_acc") for t in r.get("method_config", {}).get("teachers", [])]})
    return out


def rank(rows: list[dict], names: list[str]) -> tuple[list[str], list[list[str]], dict]:
    by_key: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["task"], r["seed"]), {})[r["candidate"]] = r
    header = ["Task", *[f"{n} acc %" for n in names], "IM pick", "SND pick", "best"]
    body, picks = [], {"IM": [], "SND": [], "best": [], **{n: [] for n in names}}
    for (task, seed), cands in sorted(by_key.items()):
        if len(cands) < len(names):  # compare only where every candidate finished
            continue
        pick = {v: max(cands.values(), key=lambda r: r[k] if r[k] is not None else -1e9)
                for v, k in (("IM", "im"), ("SND", "snd"))}
        best = max(r["acc"] for r in cands.values())
        for n in names:
            picks[n].append(cands[n]["acc"])
        for v in ("IM", "SND"):
            picks[v].append(pick[v]["acc"])
        picks["best"].append(best)
        body.append([f"{task} s{seed}", *[f"{cands[n]['acc']:.1f}" for n in names],
                     f"{pick['IM']['candidate']} ({pick['IM']['acc']:.1f})",
                     f"{pick['SND']['candidate']} ({pick['SND']['acc']:.1f})", f"{best:.1f}"])
    if body:
        mean = lambda xs: f"{statistics.fmean(xs):.1f}"  # noqa: E731
        body.append(["mean", *[mean(picks[n]) for n in names], mean(picks["IM"]), mean(picks["SND"]),
                     mean(picks["best"])])
    return header, body, picks


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", action="append", required=True, metavar="NAME=GLOB")
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    p.add_argument("--title", default="Candidate recipes of the distilled student")
    a = p.parse_args(argv)
    names, rows = [], []
    for spec in a.candidate:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            fail(f"--candidate '{spec}': expected NAME=GLOB")
        names.append(name)
        rows += read_candidate(name, pattern)
    header, body, _ = rank(rows, names)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    md = write_table(Path(a.out), header, body)
    cmd = "python benchmarks/recipe_candidates.py " + " ".join(f"--candidate '{c}'" for c in a.candidate)
    cmd += f" --title '{a.title}'" if a.title != p.get_default("title") else ""
    write_json(Path(a.out).with_suffix(".json"), {"command": f"{cmd} --out {a.out}", "machine": machine_info(),
                                                   "runs": rows})
    atomic_write_text(Path(a.out).with_suffix(".md"),
        f"# {a.title}\n\nRegenerate: `{cmd} --out {a.out}`\n\n"
        "Accuracy is target-test top-1, measured after training and never used to choose; IM and SND are "
        "label-free (target images only, last epoch); a pick is the candidate with the highest score. Runs trained "
        f"on: {'; '.join(sorted({r['machine'] for r in rows}))}.\n\n"
        + md + "\n")
    print(md)
    return {"rows": rows}


if __name__ == "__main__":
    sys.exit(run_cli(main))
