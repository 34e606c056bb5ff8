"""Benchmark a trained LiteDA model's artifacts: latency, throughput, size and target-test accuracy of each.

    python examples/bench.py --run runs/OfficeCaltech/W2A/source_only/seed0 --runtime torch ort --threads 1
"""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.deploy.cli import bench_cli  # noqa: E402

if __name__ == "__main__":
    bench_cli()
