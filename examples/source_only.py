"""Source-only baseline: labeled source, evaluated on the target (tllib's examples/.../erm.py)."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("source_only", regime="source_only")
