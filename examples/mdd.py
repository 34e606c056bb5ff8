"""MDD: margin disparity discrepancy with an adversarial head (tllib's mdd.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("mdd", regime="adapt")
