"""``python -m liteda.report``: the same as ``liteda report``."""
import sys

from ..utils import run_cli
from .cli import main

sys.exit(run_cli(main))
