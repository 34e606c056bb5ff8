"""SHOT-IM: source-free information maximisation from the source-only model (run source_only.py first)."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.runner import cli  # noqa: E402

if __name__ == "__main__":
    cli("shot_im", regime="adapt")
