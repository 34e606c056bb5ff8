"""CDAN+E: CDAN with entropy conditioning (the same as ``cdan.py -E``; its own script so ``make METHODS=cdan_e``
and the grid's rules find it)."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.runner import cli  # noqa: E402

if __name__ == "__main__":
    cli("cdan_e", regime="adapt")
