"""IWAN: importance-weighted adversarial adaptation (tllib's partial-DA iwan.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("iwan", regime="adapt")
