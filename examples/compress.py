"""Compress an adapted run's model.pt: attention swap -> pruning -> low-rank -> INT8, with self-distillation."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.compress.pipeline import cli  # noqa: E402

if __name__ == "__main__":
    cli()
