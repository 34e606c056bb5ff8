"""``liteda compress --run RUN [--recipe NAME | technique flags] [--out DIR] [--label TEXT]``.

Reads the parent run's record (its model, images and transform), applies the active techniques in registry
order (resolution -> activation -> attention -> prune -> lowrank -> binary -> quantize), each followed by its
recovery fine-tune, and writes a run folder of its own: ``compressed.pt``, ``compressed.ts``, ``results.json``,
``splits/`` and, last, ``record.json`` (kind ``compress``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Optional

import torch

from ..metrics import file_size_mb
from ..record import FILENAME, StageRecord, Transform, copy_splits, hold_out, holdout_list, relative, write_record
from ..settings import apply_threads, cache_dir
from ..utils import OneLineParser, fail, machine_info, seed_everything, write_json
from .registry import RECIPES, TECHNIQUES

PROG = "liteda compress"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Compress the model of a LiteDA run: a registered recipe, or "
                                             "techniques by flag (applied in the order of the groups below)")
    p.add_argument("--run", required=True, help="parent run folder: a training run (its model.pt) or a float "
                                                "compression run (its compressed.pt, to compress further)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help=f"a registered recipe ({', '.join(RECIPES.names())}); flags after it override its own")
    p.add_argument("--out", default=None,
                   help="output run folder (default: <runs>/<dataset>/<task>/<recipe or 'compressed'>/seed<k>, "
                        "beside the parent's)")
    p.add_argument("--label", default=None, help="row label in tables (default: the recipe's, or the techniques)")
    for name, technique in TECHNIQUES.items():
        doc = (technique.__doc__ or "").strip().splitlines()
        technique.add_args(p.add_argument_group(f"technique {name}", doc[0] if doc else None))
    f = p.add_argument_group("recovery fine-tuning (self-distillation through the engine)")
    f.add_argument("--ft-epochs", type=int, default=2, help="epochs after each stage (0: none)")
    f.add_argument("--ft-iters", type=int, default=None, help="iterations per epoch (default: the protocol's)")
    f.add_argument("--ft-lr", type=float, default=0.005)
    f.add_argument("--kd-temperature", type=float, default=4.0)
    f.add_argument("--ft-teacher-run", default=None, metavar="RUN",
                   help="distil the recovery fine-tunes from this run's model (e.g. the distilled student's own "
                        "teacher) instead of the uncompressed student")
    f.add_argument("--trade-off", type=float, default=1.0, help="weight of the distillation loss")
    f.add_argument("--bn-batches", type=int, default=20,
                   help="re-estimate BatchNorm statistics on this many source+target batches after each stage (0: keep them)")
    f.add_argument("--ft-guard", action="store_true",
                   help="keep a float stage's fine-tune only if it lowers the KL to the uncompressed model on strong "
                        "views of unlabeled target-train; else restore the weights before it (label-free)")
    f.add_argument("--ft-holdout", type=float, default=0.0, metavar="FRAC",
                   help="set a seeded share of unlabeled target-train aside from calibration and fine-tuning "
                        "(<out>/splits/<target>_holdout.txt): liteda bench then measures every artifact's agreement "
                        "with the float student on images the compression never fitted")
    f.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=cache_dir(), help="decoded-image cache")
    p.add_argument("--latency-runs", type=int, default=50, help="bs1 latency: timed runs after warm-up (0: not measured)")
    p.add_argument("--latency-threads", type=int, default=1, help="intra-op threads for the latency runs")
    p.add_argument("--seed", type=int, default=None, help="default: the parent run's")
    p.add_argument("--no-progress", action="store_true")
    return p


def expand_recipe(argv: list[str]) -> list[str]:
    """``--recipe NAME`` followed by the recipe's flags, in place: flags given after it override the recipe's
    (argparse keeps a flag's last value)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg != "--recipe" and not arg.startswith("--recipe="):
            out.append(arg)
            i += 1
            continue
        if "=" in arg:
            name, i = arg.split("=", 1)[1], i + 1
        elif i + 1 < len(argv):
            name, i = argv[i + 1], i + 2
        else:
            fail("--recipe needs a name")
        out += ["--recipe", name, *RECIPES.get(name).args]
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(expand_recipe(argv))
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    if args.ft_epochs < 0 or args.batch_size < 1:
        fail("-b must be positive, --ft-epochs >= 0")
    if args.bn_batches < 0:
        fail(f"--bn-batches must be >= 0, got {args.bn_batches}")
    if not 0 <= args.ft_holdout < 1:
        fail(f"--ft-holdout must be in [0, 1), got {args.ft_holdout}")
    if args.latency_runs < 0 or args.latency_threads < 1:
        fail(f"--latency-runs must be >= 0 and --latency-threads >= 1, got {args.latency_runs} and {args.latency_threads}")
    for _, technique in TECHNIQUES.items():
        technique.check(args)


def default_out(run: Path, args: argparse.Namespace) -> Path:
    """The sibling run folder: ``<runs>/<dataset>/<task>/<recipe or 'compressed'>/seed<k>``."""
    return run.parent.parent / (args.recipe or "compressed") / run.name


def describe_ops(ops: list[dict]) -> str:
    """A label built from the techniques, e.g. ``compressed (attention eca, lowrank, quantize ptsq)``."""
    names = [f"{op['op']} {op['kind']}" if "kind" in op else op["op"] for op in ops]
    return f"compressed ({', '.join(names) or 'no technique'})"


def stage_record(args: argparse.Namespace, run: Path, parent: StageRecord, out: Path, ops: list[dict], seed: int,
                 crop: int, resize: int, torchscript: bool) -> StageRecord:
    """What the output run is, for the next stage and the report: the parent's data, the student's transform
    (a resolution stage changes it), the files written and the parent run."""
    recipe = RECIPES.get(args.recipe) if args.recipe else None
    return StageRecord(
        kind="compress", name=out.resolve().parent.name,
        label=args.label or (recipe.label if recipe else describe_ops(ops)), seed=seed,
        dataset=dataclasses.replace(parent.dataset, splits="splits"),
        transform=Transform(resize=resize, crop=crop, mean=list(parent.transform.mean), std=list(parent.transform.std)),
        arch=parent.arch, artifacts={"compressed": "compressed.pt", **({"torchscript": "compressed.ts"} if torchscript
                                                                        else {})},
        parents={"model": relative(run, out)}, weights=parent.weights)


def main(argv: Optional[list[str]] = None) -> dict:
    from .measure import describe
    from .model_file import load_compressed, save_compressed, save_torchscript
    from .parent import load_ft_teacher, load_parent, read_run
    from .pipeline import Pipeline, apply_techniques, build_data

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    apply_threads()
    seed = read_run(args.run, "--run").seed if args.seed is None else args.seed
    seed_everything(seed)  # before the model is built: its structure's initialisation draws from the generator
    parent = load_parent(args.run)
    prec, tf = parent.record, parent.record.transform
    for _, technique in TECHNIQUES.items():
        technique.check_input(args, tf)
    num_classes = parent.base["num_classes"]
    ft_teacher, ft_teacher_info = load_ft_teacher(args.ft_teacher_run, num_classes, parent.model)
    out = Path(args.out) if args.out else default_out(parent.run, args)
    if out.resolve() == parent.run.resolve():
        fail(f"--out '{out}' is the parent run folder; give another")
    out.mkdir(parents=True, exist_ok=True)
    (out / FILENAME).unlink(missing_ok=True)  # the stage is finished only once its record is written again
    copy_splits(parent.run, out, prec)  # the run's own lists: what it may fit, and what it set aside
    stale = holdout_list(out / "splits", prec.dataset.target)
    if stale.is_file() and not holdout_list(prec.splits_dir(parent.run), prec.dataset.target).is_file():
        stale.unlink()  # left by an earlier run into this folder; the lists above are the parent's whole ones
    lists = dataclasses.replace(prec, dataset=dataclasses.replace(prec.dataset, splits="splits"))
    held = hold_out(out / "splits", prec.dataset.target, args.ft_holdout, seed)

    def data_at(resize: Optional[int] = None, crop: Optional[int] = None):
        return build_data(lists, out, num_classes, args.batch_size, args.cache_dir, not args.no_progress,
                          resize, crop)

    data = data_at()
    teacher = parent.model.eval()
    before = describe(teacher, data.target_test, num_classes, tf.crop, parent.file, args.latency_runs,
                      args.latency_threads)
    print(f"uncompressed: {before['params']:,} params | {before['file_mb']:.2f} MB | "
          f"target-test acc {before['target_test']['acc']:.2f}", flush=True)

    ctx = Pipeline(args, teacher, data, out, tf.crop, tf.resize, data_at, ft_teacher)
    apply_techniques(ctx, args)
    model = ctx.student.eval()
    ops = parent.ops + ctx.ops
    size = ctx.input_size  # the student's own, after a resolution stage

    base = {**parent.base, "crop_size": size, "resize_size": ctx.resize}
    save_compressed(model, base, ops, out / "compressed.pt", ctx.float_model)
    ts_ok = save_torchscript(model, size, out / "compressed.ts")
    reloaded, _ = load_compressed(out / "compressed.pt")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        reload_diff = float((reloaded(x) - model(x)).abs().max())
    after = describe(model, ctx.data.target_test, num_classes, size, out / "compressed.pt", args.latency_runs,
                     args.latency_threads, ctx.float_model)
    results = {
        "schema": "liteda.compress/1", "ckpt": str(parent.file), "run": str(parent.run), "task": prec.task,
        "dataset": prec.dataset.name,
        "techniques": [op["op"] if op["op"] != "quantize" else f"quantize:{op['kind']}" for op in ops],
        "before": before, "after": after,
        "delta_acc": after["target_test"]["acc"] - before["target_test"]["acc"],
        "stages": ctx.report, "finetune_config": vars(ctx.ft), "finetune_teacher": ft_teacher_info,
        "reload_max_abs_diff": reload_diff, "target_holdout": held,
        "artifacts": {"compressed.pt": file_size_mb(out / "compressed.pt"),
                      **({"compressed.ts": file_size_mb(out / "compressed.ts")} if ts_ok else {})},
        "label_use": "target labels: target-test evaluation only (no calibration, fine-tuning or selection)",
        "machine": machine_info(), "command": " ".join([PROG, *argv]),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "results.json", results)
    write_record(out, stage_record(args, parent.run, prec, out, ops, seed, size, ctx.resize, ts_ok))
    print(f"compressed: {after['params']:,} params | {after['file_mb']:.2f} MB | target-test acc "
          f"{after['target_test']['acc']:.2f} ({results['delta_acc']:+.2f}) | {out / 'results.json'}")
    return results
