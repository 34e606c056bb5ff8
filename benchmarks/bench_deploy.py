"""Deployment table for one run folder -> benchmarks/results/deploy_<task>.{json,md,csv}.

    python benchmarks/bench_deploy.py runs/OfficeCaltech/W2A/source_only/seed0 [any liteda bench flag]

Defaults: torch + ORT (+ OpenVINO when installed), FP32/FP16/INT8, 1 thread (the steadiest number on a shared
CPU), 300 timed calls. Extra flags are passed to ``liteda bench`` unchanged (e.g. --runtime trt on a GPU).
"""
import importlib.util
import sys
from pathlib import Path

from liteda.deploy.cli import bench_main
from liteda.record import read_record
from liteda.utils import fail, run_cli

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        fail("usage: bench_deploy.py RUN_DIR [liteda bench flags]")
    run, rest = Path(argv[0]), argv[1:]
    task = read_record(run).task
    if not any(f in rest for f in ("--artifacts", "--runtime")):
        rest += ["--runtime", "torch", "ort"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    if "--precision" not in rest and "--artifacts" not in rest:
        rest += ["--precision", "fp32", "fp16", "int8"]
    if "--threads" not in rest:
        rest += ["--threads", "1"]
    if "--iters" not in rest:
        rest += ["--iters", "300"]
    bench_main(["--run", str(run), "--report", str(ROOT / "benchmarks" / "results" / f"deploy_{task}"), *rest])


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
