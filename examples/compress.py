"""Compress an adapted run's model.pt: attention swap -> pruning -> low-rank -> INT8, with self-distillation."""
import sys

from liteda.compress.pipeline import cli

if __name__ == "__main__":
    cli()
