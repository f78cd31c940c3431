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
from inspect_core.errors import UsageError

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


_DEFAULTS = InspectConfig()


def recipe_default(key: str) -> str:
    """``show_default`` text of a flag that sets recipe ``key``: the recipe's default and where it lives.

    Flags default to None (not given) so the recipe can hold every default; typer would then show no
    default at all. This shows the one the command runs with when neither the flag nor the recipe sets it,
    e.g. ``[default: (auto, recipe dataset.format)]``.
    """
    value: Any = _DEFAULTS
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, bool) or value is None:
        shown = {True: "true", False: "false", None: "none"}[value]  # as the recipe (YAML) spells them
    else:
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return f"{shown}, recipe {key}"


def set_in_recipe(config: InspectConfig, key: str) -> bool:
    """Whether ``key`` was given (recipe file, ``--set`` or a flag) rather than left at its default."""
    section: Any = config
    *parents, name = key.split(".")
    for part in parents:
        if part not in section.model_fields_set:
            return False
        section = getattr(section, part)
    return name in section.model_fields_set


def require(config: InspectConfig, key: str, option: str, example: str) -> None:
    """A usage error unless ``key`` was given by ``option`` or the recipe: a required input never falls back to a default."""
    if not set_in_recipe(config, key):
        raise UsageError(f"{option} is required (or {key} in the --config recipe), e.g. {example}")
