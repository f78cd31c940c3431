"""The recipe options every command with ``--config`` shares: ``--set key.path=value`` and the one merge.

Command-line flags are overrides in the same merge as ``--set`` (flags last), so a flag and the
recipe can never disagree about a default: flags default to None (not given) and the config model
holds every default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from inspect_core.config import InspectConfig, load_recipe

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY.PATH=VALUE",
        help="Override one recipe field, e.g. --set train.lr=2e-4 --set model.image_size=512 (repeatable; values are YAML).",
    ),
]  # fmt: skip


def recipe(config: Path | None, sets: list[str] | None, flags: dict[str, Any] | None = None) -> InspectConfig:
    """Recipe file (or the defaults), then ``--set`` items, then the flags that were given (dotted key -> value)."""
    given = {key: value for key, value in (flags or {}).items() if value is not None}
    return load_recipe(config, sets or [], given)
