"""SHOT-IM: source-free information maximisation from the source-only model (run source_only.py first)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("shot_im", regime="adapt")
