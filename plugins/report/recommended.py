"""The artifact ``liteda recommend`` chose per task and seed (``<task>/recommended/seed<k>/recommended.json``,
written by the grid when it compresses), as one table: what a user would ship, how fast, and what it scored."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..tables import order_tasks
from ..utils import read_json

FOLDER, FILE = "recommended", "recommended.json"


def collect_choices(base: Path) -> list[dict]:
    """Every choice under ``base`` (a runs tree's dataset folder), with its task, seed and folder."""
    out = []
    for path in sorted(base.glob(f"*/{FOLDER}/seed*/{FILE}")):
        doc = read_json(path)
        out.append({**doc, "task": path.parents[2].name, "seed": int(path.parent.name[4:]), "_dir": path.parent})
    tasks = order_tasks({c["task"] for c in out})
    return sorted(out, key=lambda c: (tasks.index(c["task"]), c["seed"]))


def choice_table(choices: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["task", "seed", "recommended (run/artifact)", "bs1 p50 ms", "× student eager",
              "agree w/ float student %", "size MB", "target-test acc %", "float student acc %", "Δ pt"]

    def f(v, nd=1):
        return "–" if v is None else f"{v:.{nd}f}"

    body = []
    for c in choices:
        name = c.get("candidate")
        acc, base = (c.get("target_test_acc") or {}).get(name), c.get("student_target_test_acc")
        body.append([c["task"], str(c["seed"]), name or "none", f(c.get("p50_ms"), 2),
                     f(c.get("speedup_vs_eager"), 2), f(c.get("agree_unlabeled"), 2),
                     f(c.get("size_mb"), 2), f(acc), f(base),
                     "–" if acc is None or base is None else f"{acc - base:+.1f}"])
    return header, body


def copy_choices(choices: list[dict], out: Path) -> None:
    """Each choice's JSON and candidate table as ``out/recommended/<task>_s<seed>.*``."""
    for c in choices:
        for src in (c["_dir"] / FILE, c["_dir"] / "recommended.md", c["_dir"] / "recommended.csv"):
            if src.is_file():
                (out / FOLDER).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / FOLDER / f"{c['task']}_s{c['seed']}{src.suffix}")
