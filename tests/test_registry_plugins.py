"""One file plus one registry line: a third-party adaptation method, compression technique and recipe,
registered from a plugin module on LITEDA_PLUGINS (no LiteDA file edited), reach the CLI, the grid and the
report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PLUGIN = textwrap.dedent('''
    """A plugin as a user would write it: classes plus one registration line each."""
    import torch

    from liteda.adaptation import METHODS, Method
    from liteda.compress.base import Technique
    from liteda.compress.recipes import Recipe
    from liteda.compress.registry import RECIPES, TECHNIQUES


    class EntropyMin(Method):
        """Entropy minimisation on the target batch."""
        name = "entropy_min"
        uses_target = True

        def forward(self, step):
            p = step.logits_t.softmax(1)
            return -(p * p.clamp_min(1e-8).log()).sum(1).mean(), {}


    class ScaleHead(Technique):
        """Scales the classifier head (argmax-preserving for a positive factor)."""
        name = "scale_head"
        test_args = ("--scale-head", "2.0")

        @staticmethod
        def add_args(group):
            group.add_argument("--scale-head", type=float, default=None, help="multiply the head by this")

        @staticmethod
        def active(args):
            return args.scale_head is not None

        @staticmethod
        def apply(ctx, args):
            with torch.no_grad():
                ctx.student.head.weight.mul_(args.scale_head)
                ctx.student.head.bias.mul_(args.scale_head)
            ctx.finish_float_stage({"op": "scale_head", "factor": args.scale_head})


    METHODS.register("entropy_min", EntropyMin)
    TECHNIQUES.register("scale_head", ScaleHead)
    RECIPES.register("scaled", Recipe("scaled", "student with a scaled head", ["--scale-head", "2.0", "--ft-epochs", "0"]))
''')


def test_plugin_entries_reach_the_cli_the_grid_and_the_report(tmp_path):
    from conftest import make_folder_dataset

    (tmp_path / "my_liteda_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "LITEDA_PLUGINS": "my_liteda_plugin", "LITEDA_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    def liteda(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "liteda", *argv], capture_output=True, text=True, env=env,
                              timeout=timeout)

    assert "entropy_min" in liteda("list", "methods").stdout.split()
    assert "scale_head" in liteda("list", "techniques").stdout.split()
    assert "scaled" in liteda("list", "recipes").stdout.split()
    assert "--scale-head" in liteda("compress", "-h").stdout
    assert "usage: liteda adapt -m entropy_min" in liteda("adapt", "-m", "entropy_min", "-h").stdout

    data = make_folder_dataset(tmp_path / "data")
    runs, results = tmp_path / "runs", tmp_path / "results"
    r = liteda("grid", str(data), "-d", "Custom", "--tasks", "src2tgt", "--epochs", "1", "--methods", "entropy_min",
               "--recipes", "scaled", "--teacher", "mobilenet_v3_small", "--teacher-method", "entropy_min",
               "--runs", str(runs), "--results", str(results), "--no-analysis",
               "--train-args", "--scratch -i 1 -b 8 --resize-size 36 --crop-size 32",
               "--compress-args", "-b 8 --latency-runs 1", "--only", "adapt", "compress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    task = runs / "Custom" / "src2tgt"
    adapted = json.loads((task / "entropy_min" / "seed0" / "record.json").read_text())
    assert adapted["kind"] == "adapt" and adapted["label"] == "entropy_min"
    compressed = json.loads((task / "scaled" / "seed0" / "results.json").read_text())
    assert [st["op"] for st in compressed["stages"]] == ["scale_head"]
    acc = (results / "accuracy.md").read_text()
    assert "| entropy_min |" in acc and "student with a scaled head" in acc
