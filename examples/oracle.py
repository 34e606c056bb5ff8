"""Oracle: trained on labeled target-train with the same epochs and iterations as an adaptation run."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("source_only", regime="oracle")
