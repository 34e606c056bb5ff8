"""``liteda export --run RUN`` and ``liteda bench --run RUN``: a run folder -> its deploy artifacts
(``<run>/deploy/``) -> a benchmark table with each artifact's own target-test accuracy.

Which artifacts: ``--artifacts NAME ...`` (any of :data:`liteda.deploy.ARTIFACTS`), or every registered artifact
whose runtime is in ``--runtime`` and precision in ``--precision`` (each defaults to the values of the default
set: ``bench`` torch + ort x fp32 int8 int8w, ``export`` ort x fp32 fp16 int8 int8w; OpenVINO (``--runtime
openvino``, its NNCF accuracy control takes minutes) and the compiled PyTorch path (``--runtime inductor``,
compiling takes minutes on a small CPU) are measured when asked for). A model
PyTorch quantized (PTSQ/QAT) keeps only the artifacts made from such a model.

``bench`` then recommends one artifact without target labels (:mod:`.recommend`): the fastest at batch 1 whose
top-1 agreement with the run's model on unlabeled target-train images is at least ``--min-agreement``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional

from ..utils import OneLineParser, fail

DEFAULTS = {  # (runtimes, precisions) of the default selection
    "bench": (("torch", "ort"), ("fp32", "int8", "int8w")),
    "export": (("ort",), ("fp32", "fp16", "int8", "int8w")),
}


def _artifact_classes() -> list:
    from . import ARTIFACTS

    return [cls for _, cls in ARTIFACTS.items()]


def _flag_owners(method: str) -> list:
    """The classes that define ``method`` themselves (each adds/checks its flags once for all its subclasses)."""
    from .artifact import DeployArtifact

    owners: list = []
    for cls in _artifact_classes():
        for k in reversed(cls.__mro__):
            if k is not DeployArtifact and method in vars(k) and k not in owners:
                owners.append(k)
    return owners


def build_parser(command: str) -> argparse.ArgumentParser:
    """The flags of ``liteda export`` / ``liteda bench`` (every registered artifact's own flags included)."""
    from ..settings import cache_dir, threads

    bench = command == "bench"
    classes = _artifact_classes()
    runtimes, precisions = DEFAULTS[command]
    what = ("Benchmark the deploy artifacts of a LiteDA run: accuracy, size, latency, throughput" if bench
            else "Write the deploy artifacts (ONNX, INT8, engines) of a LiteDA run")
    p = OneLineParser(prog=f"liteda {command}", description=what)
    p.add_argument("--run", required=True, help="run folder with record.json (a training or compress run)")
    p.add_argument("--artifacts", nargs="+", default=None, metavar="NAME",
                   help="any of: " + " ".join(cls.name for cls in classes))
    p.add_argument("--runtime", nargs="+", default=None,
                   help=f"filter: any of {' '.join(sorted({c.runtime for c in classes}))} "
                        f"(default without --artifacts: {' '.join(runtimes)})")
    p.add_argument("--precision", nargs="+", default=None,
                   help=f"filter: any of {' '.join(sorted({c.precision for c in classes}))} "
                        f"(default without --artifacts: {' '.join(precisions)})")
    p.add_argument("--calib-size", type=int, default=128, help="unlabeled target-train images for calibration")
    p.add_argument("--seed", type=int, default=0, help="which target-train images are drawn for calibration")
    p.add_argument("--threads", type=int, default=threads(),
                   help="intra-op threads for torch/ORT/OpenVINO (default: LITEDA_THREADS or the runtime's own)")
    p.add_argument("--out", default=None, help="deploy folder (default <run>/deploy)")
    p.add_argument("--cache-dir", default=cache_dir(), help="decoded-image cache")
    p.add_argument("--force", action="store_true", help="re-export even when artifacts are up to date")
    p.add_argument("--min-agreement", type=float, default=99.0, metavar="PCT",
                   help="least top-1 agreement (%%) with the run's model on unlabeled target-train images: bench "
                        "recommends the fastest artifact above it; NNCF's accuracy control keeps INT8 above it")
    if bench:
        p.add_argument("--agreement-size", type=int, default=256, metavar="N",
                       help="unlabeled target-train images that measure the agreement (held out from calibration "
                            "as far as the split allows)")
        p.add_argument("--iters", type=int, default=200, help="timed bs1 calls (bs32 calls: iters/20)")
        p.add_argument("--warmup", type=int, default=20)
        p.add_argument("--max-images", type=int, default=None, help="score on the first N target-test images only")
        p.add_argument("--report", default=None, help="write <REPORT>.{json,md,csv} (default <out>/bench)")
    for owner in _flag_owners("add_args"):
        owner.add_args(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    classes = _artifact_classes()
    for flag, values, known in (("--runtime", args.runtime, {c.runtime for c in classes}),
                                ("--precision", args.precision, {c.precision for c in classes})):
        bad = [v for v in values or () if v not in known]
        if bad:
            fail(f"unknown {flag[2:]} '{bad[0]}' ({flag}); choose from {', '.join(sorted(known))}")
    if args.artifacts:
        from . import ARTIFACTS

        for name in args.artifacts:
            ARTIFACTS.get(name)  # unknown: one line naming the choices
    if args.calib_size < 1:
        fail(f"--calib-size must be positive, got {args.calib_size}")
    if getattr(args, "iters", 1) < 1:
        fail("--iters must be positive")
    if not 0 < args.min_agreement <= 100:
        fail(f"--min-agreement is a percentage in (0, 100], got {args.min_agreement:g}")
    if getattr(args, "agreement_size", 1) < 1:
        fail(f"--agreement-size must be positive, got {args.agreement_size}")
    for owner in _flag_owners("check_args"):
        owner.check_args(args)


def select(args: argparse.Namespace, command: str, model_kind: str) -> tuple[list[str], bool]:
    """(artifact names in registry order, whether they were asked for explicitly)."""
    from . import ARTIFACTS

    runtimes = args.runtime or (None if args.artifacts else DEFAULTS[command][0])
    precisions = args.precision or (None if args.artifacts else DEFAULTS[command][1])
    names = [n for n, c in ARTIFACTS.items()
             if (args.artifacts is None or n in args.artifacts) and (runtimes is None or c.runtime in runtimes)
             and (precisions is None or c.precision in precisions)
             and (args.artifacts is not None or model_kind in c.model_kinds)]  # named ones: a note says why not
    if not names:
        fail(f"no deploy artifact for a {model_kind} model matches --artifacts/--runtime/--precision")
    return names, bool(args.artifacts or args.runtime or args.precision)


def export_main(argv: Optional[list[str]] = None) -> dict:
    from .export import export_artifacts, make_context

    args = build_parser("export").parse_args(argv)
    check_args(args)
    ctx = make_context(args)
    names, explicit = select(args, "export", ctx.model_kind)
    report = export_artifacts(ctx, names, strict=names if explicit else ())
    for name, why in report["skipped"].items():
        print(f"note: {name} skipped: {why}", file=sys.stderr)
    return report


def bench_main(argv: Optional[list[str]] = None) -> dict:
    from . import ARTIFACTS
    from .artifact import LoadedArtifact
    from .bench import batched_logits, run_benchmark, write_reports
    from .export import export_artifacts, make_context, write_deploy_record
    from .recommend import recommend, write_recommendation
    from .runtimes.torch import torch_runner

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser("bench").parse_args(argv)
    check_args(args)
    ctx = make_context(args)
    inp = ctx.inputs
    names, _ = select(args, "bench", ctx.model_kind)
    report = export_artifacts(ctx, names)
    loaded = []
    for name in names:
        art = ARTIFACTS.get(name)()
        why = art.available(ctx)
        if why:
            loaded.append(LoadedArtifact(name, art.runtime, art.precision, None, note=f"skipped: {why}"))
            continue
        row = art.load(ctx)
        path = art.path(ctx)
        row.name, row.path = name, str(path) if path else row.path  # the registry names the row
        loaded.append(row)
    # the reference of the label-free agreement: the run's model itself, in PyTorch eager
    reference = batched_logits(torch_runner(inp.model, threads=args.threads).run, inp.unlabeled).argmax(1)
    student = None  # a compressed run: its float student's predictions, at the student's own input size
    if inp.student_model is not None:
        student = batched_logits(torch_runner(inp.student_model, threads=args.threads).run,
                                 inp.student_unlabeled).argmax(1)
    rows = run_benchmark(loaded, inp.test_x, inp.test_y, args.iters, args.warmup, unlabeled=inp.unlabeled,
                         ref_unlabeled=reference, ref_student=student)
    images = {"split": inp.agreement_split, "labels": "not read", "n": int(len(inp.unlabeled)),
              "also_calibration_images": inp.unlabeled_overlap, "seed": args.seed}
    choice = recommend(rows, args.min_agreement, images)
    stem = Path(args.report) if args.report else ctx.out / "bench"
    meta = {"task": inp.task, "label": inp.record.label, "run": str(inp.run_dir), "checkpoint": str(inp.model_file),
            "artifacts": names, "n_test": int(len(inp.test_y)), "n_calib": int(len(inp.calib)),
            "n_unlabeled": int(len(inp.unlabeled)), "run_target_test_acc": inp.parent_acc,
            "student_run": str(inp.student_run) if inp.student_run else None, "iters": args.iters,
            "warmup": args.warmup, "threads": args.threads, "recommended": choice,
            "command": " ".join(["liteda", "bench", *map(shlex.quote, argv)]), "export": report}
    roles = write_recommendation(ctx, choice)  # fills in the copied file's name before the reports are written
    doc = write_reports(rows, stem, meta, f"Deployment benchmark: {inp.record.label}, {inp.task} ({inp.run_dir})")
    write_deploy_record(ctx, Path(f"{stem}.json"), roles)
    print(f"recommended: {choice['artifact'] or 'none'} ({choice['why']})")
    print(f"report: {stem}.md / .json / .csv; {ctx.out / 'recommended.json'}")
    return doc
