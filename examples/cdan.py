"""CDAN (-E for CDAN+E): adversarial alignment conditioned on predictions (tllib's cdan.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("cdan", regime="adapt")
