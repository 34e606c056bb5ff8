"""``liteda recommend --runs RUN ...``: one artifact across the benchmarked runs of one float student.

``liteda bench`` recommends within one run. The runs a recipe grid makes from one distilled student (the student
itself, ``1mb``, ``prune160``, ...) are each benchmarked on their own; this reads their ``deploy/bench.json`` and
applies the same rule (:func:`.recommend.recommend`) to every artifact of every run, with one reference for all:
the float student they share. A row's agreement is ``agree_unlabeled`` on the student's own run and
``agree_student`` on a compressed run (which ``bench`` measures against that ancestor at its own input size).
Target-test accuracy is never read by the rule; it is copied into ``recommended.md`` as the measurement it is.

Written into ``--out``: ``recommended.json`` (the choice, the rule, every candidate), ``recommended.<ext>`` (a
copy of the chosen file), ``recommended_example.py`` and ``recommended.md``/``.csv`` (the candidates as a table).
Latencies: the runs were benchmarked apart, minutes or days from each other, and on a shared machine that drift is
larger than the differences being ranked. So the artifacts that pass the agreement threshold are timed again
here, interleaved (:func:`.bench.interleaved_latency`, ``--rounds``), and the rule reads those medians;
``--rounds 0`` reads each benchmark's own p50 instead (then the runs must have one thread count and one CPU).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

from ..record import FILENAME, read_record
from ..tables import write_table
from ..utils import OneLineParser, atomic_write_text, fail, machine_info, machine_label, read_json, write_json
from .recommend import CHOICE, clear, recommend, write_recommendation

BENCH = Path("deploy") / "bench.json"


def student_of(run_dir: Path) -> Path:
    """The float student a run is or descends from (its trained ancestor through the ``model`` parents)."""
    from .inputs import trained_ancestor

    rec = read_record(run_dir)
    if rec.kind != "compress":
        return run_dir.resolve()
    ancestor = trained_ancestor(run_dir, rec)
    if ancestor is None:
        fail(f"--runs '{run_dir}': the trained run it was compressed from is gone (its record's model parents)")
    return ancestor[0].resolve()


def read_bench(run_dir: Path) -> dict:
    path = run_dir / BENCH
    if not path.is_file():
        fail(f"--runs '{run_dir}' has no {BENCH}: run `liteda bench --run {run_dir}` first")
    doc = read_json(path)
    if not doc.get("rows"):
        fail(f"'{path}' has no benchmark rows")
    return doc


def candidates(run_dir: Path, doc: dict, is_student: bool) -> list[dict]:
    """The run's benchmark rows as candidates named ``<run>/<artifact>``, their agreement the student's."""
    run = read_record(run_dir).name
    split = ((doc.get("recommended") or {}).get("agreement_images") or {}).get("split", "target-train")
    out = []
    for r in doc["rows"]:
        agree = r.get("agree_unlabeled") if is_student else r.get("agree_student")
        note = r.get("note") or ("" if agree is not None or r.get("p50_ms") is None else
                                 "no agreement with the float student recorded (bench the run again)")
        out.append({"name": f"{run}/{r['name']}", "run": run, "run_dir": run_dir, "artifact": r["name"],
                    "runtime": r.get("runtime"), "precision": r.get("precision"), "p50_ms": r.get("p50_ms"),
                    "agree_unlabeled": agree, "size_mb": r.get("size_mb"), "logits_finite": r.get("logits_finite"),
                    "note": note, "split": split, "acc": r.get("acc")})
    return out


def same_timing(docs: dict[Path, dict]) -> None:
    """One thread count and one CPU for every benchmark, or the latencies cannot be compared."""
    for key in ("threads",):
        seen = {run: doc.get(key) for run, doc in docs.items()}
        if len(set(seen.values())) > 1:
            fail("--runs were benchmarked with different --threads (" + ", ".join(
                f"{run}: {v}" for run, v in seen.items()) + "): bench them again at one thread count")
    cpus = {run: (doc.get("machine") or {}).get("cpu") for run, doc in docs.items()}
    if len(set(cpus.values())) > 1:
        fail("--runs were benchmarked on different CPUs (" + ", ".join(f"{r}: {c}" for r, c in cpus.items()) + ")")


def retime(rows: list[dict], rounds: int, threads: Optional[int]) -> None:
    """Replace the p50 of ``rows`` by their interleaved bs1 median, timed here (``bench_p50_ms`` keeps the
    benchmark's own)."""
    import statistics

    from . import ARTIFACTS
    from .bench import interleaved_latency

    contexts, runs, inputs = {}, {}, {}
    for c in rows:
        if c["run_dir"] not in contexts:
            contexts[c["run_dir"]] = run_context(c["run_dir"], threads)
        ctx = contexts[c["run_dir"]]
        loaded = ARTIFACTS.get(c["artifact"])().load(ctx)
        runs[c["name"]], inputs[c["name"]] = loaded.run, ctx.inputs.calib[:1]
    blocks = interleaved_latency(runs, inputs, rounds=rounds)
    for c in rows:
        c["bench_p50_ms"], c["p50_ms"] = c["p50_ms"], statistics.median(blocks[c["name"]])


def choose(runs: list[Path], min_agreement: float, rounds: int = 30,
           threads: Optional[int] = None) -> tuple[dict, list[dict]]:
    """(the choice, every candidate row with its accuracy for the table)."""
    students = {run: student_of(run) for run in runs}
    if len(set(students.values())) > 1:
        fail("--runs descend from different float students (" + ", ".join(
            f"{run} <- {s}" for run, s in students.items()) + "): choose among the runs of one student")
    student = next(iter(students.values()))
    names = [read_record(run).name for run in runs]
    if len(set(names)) < len(names):
        fail(f"--runs holds two runs of one name ({', '.join(names)})")
    docs = {run: read_bench(run) for run in runs}
    if not rounds:
        same_timing(docs)
    rows = [c for run in runs for c in candidates(run, docs[run], run.resolve() == student)]
    splits = sorted({c["split"] for c in rows})
    srec = read_record(student)
    images = {"split": splits[0] if len(splits) == 1 else "+".join(splits), "labels": "not read"}
    reference = f"the float student ({srec.name}, {srec.task} seed {srec.seed})"

    def rule() -> dict:
        return recommend([{k: v for k, v in c.items() if k != "acc"} for c in rows], min_agreement, images,
                         reference=reference)

    choice = rule()
    if rounds:
        passing = {c["name"] for c in choice["candidates"] if c["passes"]}
        retime([c for c in rows if c["name"] in passing], rounds, threads)
        choice = rule()
        choice["timing"] = {"rounds": rounds, "threads": threads, "how": "the passing artifacts, interleaved here"}
    else:
        choice["timing"] = {"threads": next(iter(docs.values())).get("threads"), "how": "each run's own benchmark"}
    # measured on target-test, copied after the choice for the tables: the rule above never reads it
    choice["target_test_acc"] = {c["name"]: c["acc"] for c in rows}
    choice["student_target_test_acc"] = next((c["acc"] for c in rows if c["run_dir"].resolve() == student
                                              and c["runtime"] == "torch" and c["precision"] == "fp32"), None)
    eager = next((c for c in rows if c["run_dir"].resolve() == student and c["artifact"] == "torch-fp32"), None)
    if eager is not None and eager.get("p50_ms") and choice.get("p50_ms"):  # timed together when retimed
        choice["eager_p50_ms"] = eager["p50_ms"]
        choice["speedup_vs_eager"] = eager["p50_ms"] / choice["p50_ms"]
    choice["student_run"] = str(student)
    choice["runs"] = {read_record(run).name: str(run) for run in runs}
    best = next((c for c in rows if c["name"] == choice["artifact"]), None)
    if best is not None:  # the registry name again, so that the loader and the copy follow the artifact
        choice.update({"candidate": best["name"], "run": best["run"], "artifact": best["artifact"]})
    return choice, rows


def run_context(run_dir: Path, threads: Optional[int] = None):
    """A benchmarked run's deploy context: the flags its benchmark ran with (``threads`` instead of its thread
    count, when given) and the files it wrote."""
    from . import ARTIFACTS
    from .cli import build_parser
    from .export import make_context

    doc = read_bench(run_dir)
    argv = shlex.split(doc.get("command") or "")[2:]  # "liteda bench ...": its flags, this run's folder
    args = build_parser("bench").parse_args([*argv, "--run", str(run_dir), "--out", str(run_dir / "deploy")])
    if threads is not None:
        args.threads = threads
    ctx = make_context(args)
    deploy = run_dir / "deploy"
    if (deploy / FILENAME).is_file():
        rec = read_record(deploy)
        ctx.files.update({n: rec.path(deploy, n) for n in rec.artifacts if n in ARTIFACTS.names()})
    return ctx


def table(rows: list[dict], choice: dict, stem: Path) -> str:
    header = ["run", "artifact", "bs1 p50 ms", "× student eager", "agree w/ float student %", "size MB", "passes",
              "target-test acc % (not read by the rule)"]
    verdict = {c["name"]: c["passes"] for c in choice["candidates"]}
    eager = choice.get("eager_p50_ms")
    body = [[c["run"], c["artifact"], "–" if c["p50_ms"] is None else f"{c['p50_ms']:.2f}",
             "–" if not (eager and c["p50_ms"]) else f"{eager / c['p50_ms']:.2f}",
             "–" if c["agree_unlabeled"] is None else f"{c['agree_unlabeled']:.2f}",
             "–" if c["size_mb"] is None else f"{c['size_mb']:.2f}",
             ("**chosen**" if c["name"] == choice.get("candidate") else "yes") if verdict[c["name"]] else "no",
             "–" if c["acc"] is None else f"{c['acc']:.1f}"] for c in rows]
    return write_table(stem, header, body)


def main(argv: Optional[list[str]] = None) -> dict:
    from ..settings import threads

    p = OneLineParser(prog="liteda recommend",
                      description="Recommend one deploy artifact across the benchmarked runs of one float student")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="run folders benchmarked with `liteda bench`: the student and runs compressed from it")
    p.add_argument("--min-agreement", type=float, default=99.0, metavar="PCT",
                   help="least top-1 agreement (%%) with the float student on unlabeled target images")
    p.add_argument("--out", required=True, help="folder for recommended.{json,md,csv}, the file and its example")
    p.add_argument("--rounds", type=int, default=30, metavar="N",
                   help="time the passing artifacts again here, N interleaved rounds (0: read each run's benchmark)")
    p.add_argument("--threads", type=int, default=threads(), help="intra-op threads of that timing")
    args = p.parse_args(argv)
    if not 0 < args.min_agreement <= 100:
        fail(f"--min-agreement is a percentage in (0, 100], got {args.min_agreement:g}")
    if args.rounds < 0:
        fail(f"--rounds must be 0 or more, got {args.rounds}")
    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not (r / FILENAME).is_file():
            fail(f"--runs '{r}' is not a run folder (no {FILENAME})")
    choice, rows = choose(runs, args.min_agreement, args.rounds, args.threads)
    choice["command"] = " ".join(["liteda", "recommend", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    choice["machine"] = machine_info()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if choice.get("run"):
        ctx = run_context(Path(choice["runs"][choice["run"]]), args.threads)
        write_recommendation(ctx, choice, out)  # also writes recommended.json
    else:
        clear(out)
        write_json(out / CHOICE, choice)
    md = table(rows, choice, out / "recommended")
    atomic_write_text(out / "recommended.md", f"Machine: {machine_label(choice['machine'])}. Command: "
                      f"`{choice['command']}`\n\n**Recommended: {choice.get('candidate') or 'none'}**. "
                      f"Rule: {choice['rule']}. Why: {choice['why']}\n\n{md}")
    print(f"recommended: {choice.get('candidate') or 'none'} ({choice['why']})")
    return choice
