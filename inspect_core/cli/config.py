"""`inspect-core config show`: the recipe as every command would run it, after ``--set`` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from inspect_core.cli.common import USER_ERRORS, _fail, app
from inspect_core.cli.recipe_options import SetOption, recipe

config_app = typer.Typer(help="Inspect recipes: the merged settings a command runs with.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; without it, the defaults.")] = None,
    sets: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the merged recipe: the file, then --set overrides, with every default filled in.

    Example: inspect-core config show --config configs/florence2-base-3090.yaml --set train.lr=5e-5
    """
    try:
        merged = recipe(config, sets).model_dump(mode="json")
    except USER_ERRORS as error:
        _fail(error)
    typer.echo(json.dumps(merged, indent=2) if as_json else yaml.safe_dump(merged, sort_keys=False), nl=as_json)
