"""How good was the teacher a distilled student learned from? Each teacher and their ensemble on target-test.

    python benchmarks/teacher_ensemble.py runs_e30_lite0kd/OfficeCaltech/*/kd_ens/seed0 \\
        --out benchmarks/studies/officecaltech_e30_lite0kd/teacher_ensemble

For each kd run folder: the teachers named in its results.json (``method_config.teachers``), combined as in
training (``TeacherEnsemble``: weighted average of probabilities), scored on the run's target-test images with
its test transform, next to the student. Target labels are read here only to report; nothing is chosen by it.
Writes <out>.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from liteda.deploy.inputs import load_inputs
from liteda.distill import load_teachers
from liteda.utils import (OneLineParser, atomic_write_text, fail, machine_label, read_json, run_cli,
                           write_json)


@torch.inference_mode()
def score_run(run: Path) -> dict:
    res_path = run / "results.json"
    if not res_path.is_file():
        fail(f"'{res_path}' does not exist (a finished kd run folder is needed)")
    res = read_json(res_path)
    teachers = (res.get("method_config") or {}).get("teachers") or []
    if not teachers:
        fail(f"'{res_path}' names no teachers (not a kd run)")
    inp = load_inputs(run, calib_size=1)
    weights = (res.get("method_config") or {}).get("teacher_weights")
    ens, infos = load_teachers([t["ckpt"] for t in teachers], len(inp.record.dataset.classes),
                               inp.record.transform.mean, inp.record.transform.std, weights)
    x = torch.from_numpy(inp.test_x)
    logits = torch.cat([ens.outputs(x[i:i + 32])[0] for i in range(0, len(x), 32)], dim=1)  # (teachers, N, C)
    y = inp.test_y
    acc = lambda z: float((z.argmax(-1).numpy() == y).mean() * 100)  # noqa: E731
    return {"task": res.get("task"), "seed": res.get("seed"), "run": str(run), "student": res["target_test"]["acc"],
            "teachers": [{"method": i.get("method"), "arch": i.get("arch"), "acc": acc(logits[k])}
                         for k, i in enumerate(infos)],
            "ensemble": acc(ens.mix(logits, 1.0)), "weights": ens.weights.tolist(), "n_test": int(len(y))}


def markdown(rows: list[dict], command: str) -> str:
    names = [f"teacher {k + 1}: {t['method']} ({t['arch']})" for k, t in enumerate(rows[0]["teachers"])]
    head = ["task", *names, "ensemble", "distilled student"]
    lines = ["# Teachers, their ensemble and the distilled student on target-test (%)", "",
             f"Machine: {machine_label()}. Command: `{command}`", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([f"{r['task']} s{r['seed']}", *[f"{t['acc']:.1f}" for t in r["teachers"]],
                                         f"{r['ensemble']:.1f}", f"{r['student']:.1f}"]) + " |")
    avg = lambda f: float(np.mean([f(r) for r in rows]))  # noqa: E731
    lines.append("| Avg | " + " | ".join([*[f"{avg(lambda r, k=k: r['teachers'][k]['acc']):.1f}" for k in range(len(names))],
                                          f"{avg(lambda r: r['ensemble']):.1f}", f"{avg(lambda r: r['student']):.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    p = OneLineParser(prog="teacher_ensemble.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="kd run folders (with results.json, model.pt, splits/)")
    p.add_argument("--out", required=True, help="write <OUT>.{json,md}")
    a: argparse.Namespace = p.parse_args(argv)
    rows = [score_run(Path(r)) for r in a.runs]
    if len({len(r["teachers"]) for r in rows}) != 1:
        fail("the runs have different numbers of teachers; give runs of one setting")
    command = "python benchmarks/teacher_ensemble.py " + " ".join(argv)
    write_json(f"{a.out}.json", {"schema": "liteda.teacher_ensemble/1", "rows": rows, "command": command})
    atomic_write_text(f"{a.out}.md", markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
