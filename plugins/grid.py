"""The grid behind ``make all-tasks`` and ``make demo``: every stage of every task and seed, planned from the
registries, run in dependency order, resumable, with a progress line and an ETA per stage.

    liteda grid ROOT -d OfficeCaltech --tasks A2W W2A --seeds 0 1 2 [-j 2]

A stage is done when its run folder holds ``record.json`` (written last by every stage), so a rerun skips
finished stages and an interrupted training resumes from its checkpoint (``--resume``). A stage that fails does
not stop the stages that do not depend on it; the report runs at the end and lists what failed and why
(``<runs>/<dataset>/grid_failures.json``). Each stage runs as its own ``liteda`` process with its log in
``<runs>/<dataset>/logs/``, named after the folder the stage writes (two grids that differ only in flags never
share a log).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .deploy.recommend import CHOICE
from .record import FILENAME, read_record
from .runner import planned_run, planned_run_dir
from .utils import OneLineParser, atomic_write_text, fail, read_json, write_json

STUDENT = "mobilenet_v3_small"
CHOSEN = "recommended"  # <task>/recommended/seed<k>: `liteda recommend` across the student's benchmarked runs


@dataclass
class Stage:
    key: str                 # unique: "<task> <what> seed <k>"
    kind: str                # source_only, oracle, adapt, teacher, distill, compress, bench, analysis
    argv: list[str]          # the liteda command line
    done: Path               # exists when the stage has finished
    deps: list[str] = field(default_factory=list)
    rank: int = 0            # start order: teachers first, so the long chains of every task start early


# the stages that train through the engine: with --nproc > 1 they run under torchrun
TRAINING = ("source_only", "oracle", "adapt", "teacher", "distill")
# teacher -> distill -> compress -> bench is the long chain; table rows and analysis fill the gaps
RANK = {"teacher": 0, "source_only": 1, "distill": 2, "compress": 3, "bench": 4, "adapt": 5, "oracle": 6,
        "analysis": 7}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="liteda grid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="dataset root")
    p.add_argument("-d", "--data", required=True, help="dataset name (OfficeCaltech, Office31, Digits, Custom, ...)")
    p.add_argument("--tasks", nargs="+", required=True, help="S2T task names, e.g. A2W W2A")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--arch", default=STUDENT)
    p.add_argument("--pretrained", default=None, help="local ImageNet weights for the student")
    p.add_argument("--methods", nargs="*", default=["mcc"], help="adaptation methods on the student (table rows)")
    p.add_argument("--teacher", default="mobilenet_v3_large")
    p.add_argument("--teacher-pretrained", default=None)
    p.add_argument("--teacher-method", default="mcc", help="how the teacher is adapted before it teaches")
    p.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--teacher-seed", type=int, default=None,
                   help="one teacher seed for every student seed (default: each seed its own teacher)")
    p.add_argument("--recipes", nargs="*", default=["1mb"], help="compression recipes of the distilled student")
    p.add_argument("--train-args", default="", help="flags for every training stage (quoted)")
    p.add_argument("--method-args", default="",
                   help="flags for every adaptation stage: the --methods rows and the teacher's (quoted)")
    p.add_argument("--teacher-args", default="", help="flags for the teacher only (quoted)")
    p.add_argument("--kd-args", default="", help="flags for the distillation stage (quoted)")
    p.add_argument("--compress-args", default="", help="flags after each recipe (quoted)")
    p.add_argument("--bench-args", default="", help="flags for each benchmark stage (quoted)")
    p.add_argument("--no-analysis", dest="analysis", action="store_false", help="skip t-SNE / A-distance")
    p.add_argument("--runs", default="runs", help="runs root")
    p.add_argument("--results", default=None, help="report folder (default: no report)")
    p.add_argument("--only", nargs="*", default=None, metavar="KIND",
                   help="run only these stage kinds and what they need: source_only oracle adapt teacher distill "
                        "compress bench analysis")
    p.add_argument("-j", "--jobs", type=int, default=1, help="stages at a time")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of each stage (LITEDA_THREADS of its process; e.g. 1 with -j 2 on 2 cores)")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes per training stage: above 1, each runs under torchrun (data parallel, the same "
                        "global batch; docs/distributed.md)")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the stages that would run")
    return p


def split_task(task: str) -> tuple[str, str]:
    if task.count("2") != 1:
        fail(f"--tasks: '{task}' is not of the form S2T (e.g. A2W)")
    s, t = task.split("2")
    return s, t


def plan(a: argparse.Namespace) -> list[Stage]:
    """Every stage of the grid in a dependency-respecting order (stage-major: long chains start first)."""
    from .adaptation import METHODS
    from .compress.registry import RECIPES

    for m in a.methods:
        METHODS.get(m)
    recipes: list[str] = []  # each recipe after the recipe whose run it compresses (qat after eca)
    for r in a.recipes:
        chain = [r]
        while RECIPES.get(chain[0]).parent != "kd":
            chain.insert(0, RECIPES.get(chain[0]).parent)
        recipes += [c for c in chain if c not in recipes]
    base = Path(a.runs) / a.data
    stages: dict[str, Stage] = {}

    def run_dir(task: str, name: str, seed: int) -> Path:
        return base / task / name / f"seed{seed}"

    alias: dict[str, str] = {}  # a stage planned twice (a teacher that is also a table row) runs once
    planned: dict[Path, tuple[str, dict]] = {}  # training folder -> the first stage planned into it, its settings

    def add(key: str, argv: list[str], done: Path, deps: list[str], kind: str) -> None:
        same = next((st for st in stages.values() if st.done == done), None)
        if same is not None:
            alias[key] = same.key
            same.rank = min(same.rank, RANK[kind])
        else:
            stages[key] = Stage(key, kind, argv, done, [alias.get(d, d) for d in deps], RANK[kind])

    def common(task: str, seed: int) -> list[str]:
        s, t = split_task(task)
        return [a.root, "-d", a.data, "-s", s, "-t", t, "--seed", str(seed), "--epochs", str(a.epochs),
                "--runs-root", a.runs, "--resume", "--no-progress", *train_flags]

    train_flags = shlex.split(a.train_args)
    method_flags = shlex.split(a.method_args)
    teacher_epochs = a.teacher_epochs or a.epochs
    for task in a.tasks:
        for seed in a.seeds:
            student = ["-a", a.arch, *(["--pretrained", a.pretrained] if a.pretrained else [])]
            k = f"{task} %s seed {seed}"
            cargs = common(task, seed)

            def training(key: str, argv: list[str], deps: list[str], kind: str) -> Path:
                """A training stage; its folder is the one the runner will name (variants included)."""
                run, settings = planned_run(argv)
                _same_settings_or_fail(run, settings)
                first_key, first = planned.setdefault(run, (key, settings))
                diff = next((k for k in settings if first[k] != settings[k]), None)
                if diff is not None:  # one folder, two experiments: the teacher is also a table row, other epochs
                    fail(f"'{first_key}' and '{key}' would both train '{run}', with {diff}={first[diff]} and "
                         f"{diff}={settings[diff]}: give them the same {diff}, or the teacher another arch or method")
                add(key, argv, run / FILENAME, deps, kind)
                if a.analysis and kind != "teacher":
                    add(f"{key} analysis", [*argv, "--phase", "analysis"], run / "tsne.png",
                        [alias.get(key, key)], "analysis")
                return run

            training(k % "source-only", ["train", *cargs, *student], [], "source_only")
            training(k % "oracle", ["oracle", *cargs, *student], [], "oracle")
            for m in a.methods:
                deps = [k % "source-only"] if METHODS.get(m).needs_source_model else []
                training(k % m, ["adapt", "-m", m, *cargs, *student, *method_flags], deps, "adapt")
            tseed = seed if a.teacher_seed is None else a.teacher_seed
            tcmd = (["train"] if a.teacher_method == "source_only"
                    else ["adapt", "-m", a.teacher_method, *method_flags])
            teacher_argv = [*tcmd, *common(task, tseed), "--epochs", str(teacher_epochs), "-a", a.teacher,
                            *(["--pretrained", a.teacher_pretrained] if a.teacher_pretrained else []),
                            *shlex.split(a.teacher_args)]
            teacher_key = f"{task} teacher {planned_run_dir(teacher_argv).parent.name} seed {tseed}"
            tdeps = [f"{task} source-only seed {tseed}"] if METHODS.get(a.teacher_method).needs_source_model else []
            teacher_run = training(teacher_key, teacher_argv, tdeps, "teacher")
            kd_run = training(k % "distill", ["distill", *cargs, *student, "--teacher-run", str(teacher_run),
                                              *shlex.split(a.kd_args)], [alias.get(teacher_key, teacher_key)],
                              "distill")
            benched = [(kd_run, k % "distill")]
            runs_of = {"kd": kd_run}
            for r in recipes:
                parent = RECIPES.get(r).parent
                parent_key = k % "distill" if parent == "kd" else k % f"compress {parent}"
                out = run_dir(task, r, seed)
                _same_parent_or_fail(out, runs_of[parent])
                add(k % f"compress {r}", ["compress", "--run", str(runs_of[parent]), "--recipe", r, "--out", str(out),
                                          "--seed", str(seed), "--no-progress", *shlex.split(a.compress_args)],
                    out / FILENAME, [parent_key], "compress")
                runs_of[r] = out
                benched.append((out, k % f"compress {r}"))
            for run, dep in benched:
                add(k % f"deploy {run.parent.name}", ["bench", "--run", str(run), *shlex.split(a.bench_args)],
                    run / "deploy" / FILENAME, [dep], "bench")
            if recipes:  # one artifact across the student and its compressed runs (bench chooses within one)
                out = run_dir(task, CHOSEN, seed)
                add(k % "recommend", ["recommend", "--runs", *(str(run) for run, _ in benched), "--out", str(out)],
                    out / CHOICE, [k % f"deploy {run.parent.name}" for run, _ in benched], "bench")
    out = sorted(stages.values(), key=lambda st: st.rank)
    if a.only is not None:
        out = _with_deps([st for st in out if st.kind in set(a.only)], stages)
    return out


def _same_settings_or_fail(run: Path, settings: dict) -> None:
    """A finished run folder is taken as done: one trained with another input size, epoch count, ... (the folder
    name does not carry them: `make all-tasks EPOCHS=50` over a 30-epoch tree) would pass for this grid's, so
    stop instead."""
    if not ((run / FILENAME).is_file() and (run / "results.json").is_file()):
        return
    was = read_json(run / "results.json")
    diff = next((k for k in settings if k in was and was[k] != settings[k]), None)
    if diff is not None:
        fail(f"'{run}' was trained with {diff}={was[diff]}, this grid asks for {diff}={settings[diff]}: use another "
             "--runs tree or move that folder away")


def _same_parent_or_fail(out: Path, parent: Path) -> None:
    """A recipe's folder does not name the run it compresses (``1mb`` of ``kd`` or of ``kd_strongaug``): a finished
    one compressed from another run would be taken as done and benched as this grid's, so stop instead."""
    if not (out / FILENAME).is_file():
        return
    rec = read_record(out)
    if "model" in rec.parents and rec.parent(out, "model").resolve() != parent.resolve():
        fail(f"'{out}' was compressed from '{rec.parent(out, 'model')}', not from '{parent}': use another --runs "
             "tree or move that folder away")


def stage_log(st: Stage, base: Path) -> Path:
    """``logs/<task>_<run folder>_seed<k>[_deploy]_<kind>.log``: named after what the stage writes, so it is as
    unique as the stage's output."""
    try:
        where = st.done.parent.relative_to(base).parts
    except ValueError:  # a run folder outside the runs tree (--out elsewhere)
        where = tuple(st.key.split())
    return base / "logs" / ("_".join((*where, st.kind)).replace("/", "_") + ".log")


def _with_deps(wanted: list[Stage], stages: dict[str, Stage]) -> list[Stage]:
    keep: dict[str, Stage] = {}

    def visit(st: Stage) -> None:
        for d in st.deps:
            visit(stages[d])
        keep.setdefault(st.key, st)

    for st in wanted:
        visit(st)
    return list(keep.values())


def _fmt(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def launcher(st: Stage, nproc: int = 1) -> list[str]:
    """How a stage's ``liteda`` command starts: one Python process, or torchrun's ``nproc`` for training stages."""
    if nproc > 1 and st.kind in TRAINING:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    return [sys.executable]


def run_stage(st: Stage, log: Path, threads: Optional[int] = None, nproc: int = 1) -> tuple[int, float, str]:
    """One stage as its own process (or torchrun's processes); returns (exit code, seconds, last lines of its log)."""
    import os

    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({"LITEDA_THREADS": str(threads)} if threads else {})}
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call([*launcher(st, nproc), "-m", "liteda", *st.argv], stdout=f, stderr=subprocess.STDOUT,
                             env=env)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return rc, time.time() - t0, " / ".join(tail)


def run(stages: list[Stage], jobs: int, base: Path, threads: Optional[int] = None, nproc: int = 1) -> list[dict]:
    """Runs the stages not done yet; returns the failures (stage, exit code, last log lines)."""
    todo = [st for st in stages if not st.done.exists()]
    by_key = {st.key: st for st in stages}
    failed: dict[str, dict] = {}
    finished: set[str] = {st.key for st in stages if st.done.exists()}
    running: dict[Future, Stage] = {}
    durations: list[float] = []
    t_start, n_total = time.time(), len(todo)
    print(f"[grid] {len(stages)} stages, {len(stages) - len(todo)} done earlier, {len(todo)} to run", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while todo or running:
            for st in list(todo):
                blocked = [d for d in st.deps if d in failed]
                if blocked:
                    todo.remove(st)
                    failed[st.key] = {"stage": st.key, "skipped": True, "why": f"needs '{blocked[0]}', which failed"}
                    print(f"[stage] {st.key}: SKIPPED (needs '{blocked[0]}')", flush=True)
                elif all(d in finished or d not in by_key for d in st.deps) and len(running) < max(1, jobs):
                    todo.remove(st)
                    print(f"[stage] {st.key}: start", flush=True)
                    running[pool.submit(run_stage, st, stage_log(st, base), threads, nproc)] = st
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                st = running.pop(fut)
                rc, secs, tail = fut.result()
                if rc == 0 and st.done.exists():
                    finished.add(st.key)
                    durations.append(secs)
                    left = len(todo) + len(running)
                    eta = left * (sum(durations) / len(durations)) / max(1, jobs)
                    print(f"[stage] {st.key}: done in {_fmt(secs)} | {n_total - left}/{n_total} | elapsed "
                          f"{_fmt(time.time() - t_start)}, ETA {_fmt(eta)}", flush=True)
                else:
                    why = tail if rc != 0 else f"exit 0 but '{st.done}' was not written"
                    failed[st.key] = {"stage": st.key, "exit_code": rc, "why": why, "command": "liteda " + shlex.join(st.argv)}
                    print(f"[stage] {st.key}: FAILED (exit {rc}) after {_fmt(secs)}: {why}", flush=True)
    return list(failed.values())


QUOTED_FLAGS = ("--train-args", "--method-args", "--teacher-args", "--kd-args", "--compress-args", "--bench-args")


def join_quoted_flags(argv: list[str]) -> list[str]:
    """``--kd-args --teacher-cache`` -> ``--kd-args=--teacher-cache``: argparse takes a lone value that starts with
    ``--`` for a flag of its own, so the Makefile's one-flag defaults would not parse."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in QUOTED_FLAGS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Optional[list[str]] = None) -> list[dict]:
    a = build_parser().parse_args(join_quoted_flags(sys.argv[1:] if argv is None else list(argv)))
    if a.jobs < 1 or a.nproc < 1:
        fail("-j and --nproc must be at least 1")
    stages = plan(a)
    base = Path(a.runs) / a.data
    if a.dry_run:
        for st in stages:
            state = "done" if st.done.exists() else "todo"
            under_torchrun = a.nproc > 1 and st.kind in TRAINING
            torchrun = f"torchrun --standalone --nproc_per_node {a.nproc} -m " if under_torchrun else ""
            print(f"{state}  {st.key}: {torchrun}liteda {shlex.join(st.argv)}")
        return []
    failures = run(stages, a.jobs, base, a.threads, a.nproc)
    write_json(base / "grid_failures.json", failures)
    if a.results:
        from .report.cli import main as report_main

        report_main(["--runs", a.runs, "--dataset", a.data, "--out", a.results])
    if failures:
        atomic_write_text(base / "grid_failures.md", "".join(f"- {f['stage']}: {f['why']}\n" for f in failures))
        fail(f"{len(failures)} stage(s) failed or were skipped; see {base / 'grid_failures.json'} (rerun to resume)")
    return failures
