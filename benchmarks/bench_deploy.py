"""Deployment table for one run folder -> benchmarks/results/deploy_<task>.{json,md,csv}.

    python benchmarks/bench_deploy.py runs/OfficeCaltech/W2A/source_only/seed0 [any examples/bench.py flag]

Defaults: torch + ORT (+ OpenVINO when installed), FP32/FP16/INT8, 1 thread (the steadiest number on a shared
CPU), 300 timed calls. Extra flags are passed to examples/bench.py unchanged (e.g. --runtime trt on a GPU).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from liteda.deploy.cli import bench_main
from liteda.utils import fail, read_json, run_cli


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        fail("usage: bench_deploy.py RUN_DIR [examples/bench.py flags]")
    run = Path(argv[0])
    if not any((run / f).is_file() for f in ("model.pt", "compressed.pt")):
        fail(f"run folder '{run}' has no model.pt or compressed.pt")
    task = read_json(run / "results.json").get("task", run.name) if (run / "results.json").is_file() else run.name
    rest = argv[1:]
    if "--runtime" not in rest:
        import importlib.util

        rest += ["--runtime", "torch", "ort"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    if "--threads" not in rest:
        rest += ["--threads", "1"]
    if "--iters" not in rest:
        rest += ["--iters", "300"]
    bench_main(["--run", str(run), "--report", str(ROOT / "benchmarks" / "results" / f"deploy_{task}"), *rest])


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
