"""``python -m liteda``: the same as the ``liteda`` command."""
from .cli import main

main()
