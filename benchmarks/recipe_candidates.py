"""Candidate recipes for the distilled student, side by side, and how the label-free validators rank them:

    python benchmarks/recipe_candidates.py --candidate default=RUNS_A/OfficeCaltech/*/kd/seed* \\
        --candidate cluster0.3=RUNS_B/OfficeCaltech/*/kd_cluster0.3/seed* --out benchmarks/results/candidates

Each candidate is a name and the glob of its finished run folders (results.json + history.csv). Per task and
seed: each candidate's target-test accuracy (measured after training, never used to choose), its IM score
and SND (label-free, last epoch), and the candidate each validator picks. The recipe a user should take is the
validators' pick; the accuracy column says afterwards whether that pick was right. ``--reference NAME=GLOB`` adds
columns that are shown beside the candidates but never picked (source-only, the oracle, an earlier recipe); a
reference to compression runs (e.g. ``RUNS/*/1mb/seed*``) shows their deployed files' accuracy.
"""
from __future__ import annotations

import argparse
import glob
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Optional

from liteda.report.tables import last_history_value
from liteda.tables import write_table
from liteda.utils import atomic_write_text, fail, machine_info, machine_label, read_json, run_cli, write_json


def read_deployed_file(name: str, run: Path) -> dict:
    """A compression run as a reference: the accuracy of its deployed file, which is what a user ships: the bench's
    recommended artifact (a PyTorch row benched beside it is not the file), or its first row without one."""
    bench = run / "deploy" / "bench.json"
    if not bench.is_file():
        fail(f"--reference {name}: '{run}' is a compression run without a deploy bench (run `liteda bench --run` on it)")
    b, seed = read_json(bench), re.search(r"seed(\d+)$", str(run))
    chosen = (b.get("recommended") or {}).get("artifact")
    row = next((r for r in b["rows"] if r["name"] == chosen), b["rows"][0])
    return {"candidate": name, "task": b["task"], "seed": int(seed.group(1)) if seed else 0, "acc": row["acc"],
            "im": None, "snd": None, "run": str(run), "artifact": row["name"], "size_mb": row["size_mb"],
            "machine": machine_label(b.get("machine") or {}), "teacher_acc": []}


def read_candidate(name: str, pattern: str, reference: bool = False) -> list[dict]:
    runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "results.json").is_file())
    if not runs:
        fail(f"--{'reference' if reference else 'candidate'} {name}: no finished run folder matches '{pattern}'")
    out = []
    for run in runs:
        r = read_json(run / "results.json")
        if "target_test" not in r:  # a compression run: its deployed file's accuracy
            if not reference:
                fail(f"--candidate {name}: '{run}' is a compression run (no validator scores): give it as --reference")
            out.append(read_deployed_file(name, run))
            continue
        out.append({"candidate": name, "task": r["task"], "seed": r["seed"], "acc": r["target_test"]["acc"],
                    "im": r["validator"]["im_score"], "snd": last_history_value(run / "history.csv", "target_test_snd"),
                    "seconds_per_epoch": r.get("timing", {}).get("seconds_per_epoch"), "run": str(run),
                    "machine": machine_label(r.get("machine") or {}),
                    "teacher_acc": [t.get("target_test_acc") for t in r.get("method_config", {}).get("teachers", [])]})
    return out


def rank(rows: list[dict], names: list[str], refs: Optional[list[str]] = None) -> tuple[list[str], list[list[str]], dict]:
    """Per task and seed where every candidate finished: each candidate's accuracy, each validator's pick among
    the candidates and the best candidate; references are shown (blank where missing) but never picked."""
    refs = refs or []
    by_key: dict[tuple[str, int], dict[str, dict]] = {}
    ref_of: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        (ref_of if r["candidate"] in refs else by_key).setdefault((r["task"], r["seed"]), {})[r["candidate"]] = r
    header = ["Task", *[f"{n} acc %" for n in names], "IM pick", "SND pick", "best", *[f"{n} acc %" for n in refs]]
    body, picks = [], {"IM": [], "SND": [], "best": [], **{n: [] for n in [*names, *refs]}}
    for (task, seed), cands in sorted(by_key.items()):
        if len(cands) < len(names):  # compare only where every candidate finished
            continue
        ref = ref_of.get((task, seed), {})
        for n in refs:
            if n in ref:
                picks[n].append(ref[n]["acc"])
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
                     f"{pick['SND']['candidate']} ({pick['SND']['acc']:.1f})", f"{best:.1f}",
                     *[f"{ref[n]['acc']:.1f}" if n in ref else "" for n in refs]])
    if body:
        mean = lambda xs: f"{statistics.fmean(xs):.1f}" if xs else ""  # noqa: E731
        body.append(["mean", *[mean(picks[n]) for n in names], mean(picks["IM"]), mean(picks["SND"]),
                     mean(picks["best"]), *[mean(picks[n]) for n in refs]])
    return header, body, picks


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", action="append", required=True, metavar="NAME=GLOB")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=GLOB",
                   help="shown beside the candidates, never picked (e.g. oracle=RUNS/*/oracle/seed*)")
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    p.add_argument("--title", default="Candidate recipes of the distilled student")
    a = p.parse_args(argv)
    names, refs, rows = [], [], []
    for flag, specs, into in (("--candidate", a.candidate, names), ("--reference", a.reference, refs)):
        for spec in specs:
            name, sep, pattern = spec.partition("=")
            if not sep or not name or not pattern:
                fail(f"{flag} '{spec}': expected NAME=GLOB")
            if name in names or name in refs:
                fail(f"{flag} '{spec}': the name '{name}' is given twice")
            into.append(name)
            rows += read_candidate(name, pattern, reference=into is refs)
    header, body, _ = rank(rows, names, refs)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    md = write_table(Path(a.out), header, body)
    cmd = "python benchmarks/recipe_candidates.py " + " ".join(
        [*(f"--candidate {shlex.quote(c)}" for c in a.candidate), *(f"--reference {shlex.quote(c)}" for c in a.reference)])
    cmd += f" --title {shlex.quote(a.title)}" if a.title != p.get_default("title") else ""
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
