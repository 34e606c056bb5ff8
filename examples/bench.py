"""Benchmark a trained LiteDA model's artifacts: latency, throughput, size and target-test accuracy of each.

    python examples/bench.py --run runs/OfficeCaltech/W2A/source_only/seed0 --runtime torch ort --threads 1
"""
import sys

from liteda.deploy.cli import bench_cli

if __name__ == "__main__":
    bench_cli()
