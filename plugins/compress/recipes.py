"""A named compression recipe: flags that ``liteda compress --recipe NAME`` expands to (registered in
:data:`liteda.compress.registry.RECIPES`)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    name: str         # the default run folder name of its output (``<task>/<name>/seed<k>``)
    label: str        # the row label in tables and the report
    args: list[str] = field(default_factory=list)  # flags given after ``--recipe`` override these
    description: str = ""
    parent: str = "kd"  # the run the grid compresses with it: the distilled student, or another recipe's run

