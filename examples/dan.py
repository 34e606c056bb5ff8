"""DAN: multi-kernel MMD over bottleneck features (tllib's dan.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("dan", regime="adapt")
