"""CDAN+E: CDAN with entropy conditioning (the same as ``cdan.py -E``; its own script so ``make METHODS=cdan_e``
and the grid's rules find it)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("cdan_e", regime="adapt")
