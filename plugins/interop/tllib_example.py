"""Run one of tllib's example scripts with LiteDA's backbones registered (no edit of tllib's files).

    liteda tllib-example [--weights ARCH=PATH ...] SCRIPT [SCRIPT'S ARGS]

    liteda tllib-example --weights mobilenet_v3_small=mbv3s.pth \\
        Transfer-Learning-Library/examples/domain_adaptation/image_classification/dann.py \\
        data/office31 -d Office31 -s A -t W -a mobilenet_v3_small --epochs 20 --log logs/dann_mbv3/A2W

The script runs as ``__main__`` with top-level imports resolved in its own folder first (tllib's examples
``import utils``) and ``sys.argv`` set to the script's arguments, as ``python SCRIPT ARGS`` from any folder would, after
``import liteda.interop.tllib`` has put ``mobilenet_v3_small`` / ``mobilenet_v3_large`` into its ``-a`` choices.
Its checkpoints (``LOG/checkpoints/best.pth``) go on to LiteDA with ``python -m liteda.interop.tllib_checkpoint``.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import runpy
import sys
from pathlib import Path
from typing import Iterator, Optional

from ..utils import OneLineParser, fail, run_cli


class ScriptFolderFinder(importlib.abc.MetaPathFinder):
    """Top-level modules found in a script's folder before anywhere else, which is what ``python SCRIPT`` does for
    the script's sibling modules (the module search path starts with the script's folder)."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)

    def find_spec(self, name: str, path=None, target=None):
        if path is not None or "." in name:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.folder])


@contextlib.contextmanager
def script_folder(folder: str | Path) -> Iterator[None]:
    """Within the block, ``import utils`` and the like find the modules beside a script in ``folder``."""
    finder = ScriptFolderFinder(Path(folder).resolve())
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def parse(argv: list[str]):
    p = OneLineParser(prog="liteda tllib-example",
                      description="run a tllib example script with LiteDA's backbones registered")
    p.add_argument("--weights", action="append", default=[], metavar="ARCH=PATH",
                   help="local state_dict for ARCH when the script asks for pretrained weights (repeatable)")
    p.add_argument("script", help="a tllib example script, e.g. .../image_classification/dann.py")
    p.add_argument("args", nargs="...", help="the script's own arguments")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    a = parse(list(sys.argv[1:] if argv is None else argv))
    weights = {}
    for item in a.weights:
        arch, sep, path = item.partition("=")
        if not sep or not arch or not path:
            fail(f"--weights '{item}': expected ARCH=PATH")
        weights[arch] = path
    script = Path(a.script)
    if not script.is_file():
        fail(f"script '{script}' does not exist")
    try:
        from . import tllib as hook
    except ImportError as e:
        fail(str(e))
    hook.register_backbones(weights)
    sys.argv = [str(script), *a.args]
    stdout, stderr = sys.stdout, sys.stderr
    try:
        with script_folder(script.parent):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        restore_streams(stdout, stderr)


def restore_streams(stdout, stderr) -> None:
    """tllib's ``CompleteLogger`` points ``sys.stdout``/``sys.stderr`` at its log and, on ``close()``, closes the
    stdout it wrapped: the interpreter's last flush would then fail and a finished run exit with status 120."""
    sys.stderr = stderr
    sys.stdout = stdout if not stdout.closed else open(1, "w", closefd=False)


if __name__ == "__main__":
    sys.exit(run_cli(main))
