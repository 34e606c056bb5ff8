"""JAN: joint MMD over features and predictions (tllib's jan.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("jan", regime="adapt")
