"""``liteda <command> [flags]``: one entry point for every stage, each with tllib's flags.

    liteda train   ROOT -d OfficeCaltech -s A -t W            source-only (labeled source)
    liteda oracle  ROOT -d OfficeCaltech -s A -t W            labeled target-train (the upper reference)
    liteda adapt   ROOT -d OfficeCaltech -s A -t W -m mcc     any registered adaptation method
    liteda distill ROOT -d OfficeCaltech -s A -t W --teacher-run RUN   teacher -> student on the unlabeled target
    liteda compress --run RUN --recipe 1mb                    a registered recipe, or techniques by flag
    liteda export  --run RUN                                  ONNX / INT8 artifacts of a run
    liteda bench   --run RUN                                  accuracy, size, latency, FPS of each artifact
    liteda recommend --runs RUN ... --out DIR                 one artifact across the runs of one student
    liteda report  --runs runs --dataset OfficeCaltech        tables, plots and the report
    liteda grid    ROOT -d OfficeCaltech --tasks A2W W2A --seeds 0 1 2   every stage, resumable (make all-tasks)
    liteda demo                                               the whole pipeline on the embedded default
    liteda list    methods|techniques|recipes|artifacts       what the registries hold

``python -m liteda ...`` is the same. Bad input is one line on stderr and exit code 2.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional

# command -> "module:function(argv) -> Any"; the module is imported only for the command that runs
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("liteda.runner:train_main", "source-only training on labeled source"),
    "oracle": ("liteda.runner:oracle_main", "training on labeled target-train (reference only)"),
    "adapt": ("liteda.runner:adapt_main", "unsupervised domain adaptation with a registered method (-m)"),
    "distill": ("liteda.runner:distill_main", "teacher -> student distillation on the unlabeled target"),
    "compress": ("liteda.compress.cli:main", "compress a run's model (a recipe or techniques by flag)"),
    "export": ("liteda.deploy.cli:export_main", "write the deploy artifacts (ONNX, INT8, engines) of a run"),
    "bench": ("liteda.deploy.cli:bench_main", "benchmark every artifact of a run: accuracy, size, speed"),
    "recommend": ("liteda.deploy.across:main", "one deploy artifact across the benchmarked runs of one student"),
    "report": ("liteda.report.cli:main", "tables, plots and the written report from finished runs"),
    "grid": ("liteda.grid:main", "every stage of tasks x seeds, resumable (make all-tasks)"),
    "demo": ("liteda.demo:main", "the whole pipeline on the embedded default dataset (make demo)"),
    "list": ("liteda.cli:list_main", "list a registry: methods, techniques, recipes, artifacts"),
    "tllib-example": ("liteda.interop.tllib_example:main", "run one of tllib's example scripts with LiteDA's backbones"),
    "import-tllib": ("liteda.interop.tllib_checkpoint:main", "turn a tllib checkpoint into a LiteDA run folder"),
}


def _resolve(target: str) -> Callable:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def registries() -> dict[str, Callable[[], list[str]]]:
    """What ``liteda list`` shows: every registry by name."""
    def methods():
        from .adaptation import METHODS
        return METHODS.names()

    def techniques():
        from .compress.registry import TECHNIQUES
        return TECHNIQUES.names()

    def recipes():
        from .compress.registry import RECIPES
        return RECIPES.names()

    def artifacts():
        from .deploy import ARTIFACTS
        return ARTIFACTS.names()

    return {"methods": methods, "techniques": techniques, "recipes": recipes, "artifacts": artifacts}


def list_main(argv: Optional[list[str]] = None) -> None:
    from .utils import OneLineParser

    regs = registries()
    p = OneLineParser(prog="liteda list", description="names in a LiteDA registry, one per line")
    p.add_argument("registry", choices=tuple(regs))
    a = p.parse_args(argv)
    print("\n".join(regs[a.registry]()))


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: liteda <command> [flags]   (liteda <command> -h for its flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    from .utils import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"liteda {__version__}")
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_cli(_resolve(COMMANDS[command][0]), rest))


if __name__ == "__main__":
    main()
