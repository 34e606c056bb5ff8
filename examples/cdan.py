"""CDAN (-E for CDAN+E): adversarial alignment conditioned on predictions (tllib's cdan.py)."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.runner import cli  # noqa: E402

if __name__ == "__main__":
    cli("cdan", regime="adapt")
