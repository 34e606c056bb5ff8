"""DANN: domain-adversarial training through gradient reversal (tllib's examples/.../dann.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("dann", regime="adapt")
