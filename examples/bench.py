"""Benchmark a trained LiteDA run's deploy artifacts: latency, throughput, size and target-test accuracy of each
(same as ``liteda bench``).

    python examples/bench.py --run runs/OfficeCaltech/W2A/source_only/seed0 --runtime torch ort --threads 1
"""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
