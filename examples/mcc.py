"""MCC: minimum class confusion on target predictions (tllib's mcc.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("mcc", regime="adapt")
