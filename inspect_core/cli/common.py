"""What every command shares: the app, the consoles, recipe loading, progress bars and error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text
from typer.core import TyperOption

from inspect_core.errors import BadInputError, EnvironmentFailure, UsageError, exit_code_for

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error or the machine failed (--debug prints the traceback); "
    "2 usage error (option, recipe key, missing path); 3 bad input data (labels, images, model files)."
)


def _flags_take_no_value() -> None:
    """No ``<bool>`` after a flag in --help.

    typer 0.29's rich help panel prints ``display_type_rich()`` for every option, flags included, so
    ``--json``, ``--augment/--no-augment`` (``bool | None``) and even ``-h`` showed ``<bool>``, as if they took
    a value; its plain-text help (``TyperOption.get_help_record``) already skips flags and counters. The
    rich panel gets the same rule here, once for every command.
    """
    shown = TyperOption.display_type_rich
    if getattr(shown, "_flags_take_no_value", False):
        return

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag or self.count else shown(self, ctx)

    display_type_rich._flags_take_no_value = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()

app = typer.Typer(
    name="inspect-core",
    help="Fabric defect inspection with Florence-2: build datasets, fine-tune, score, report.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

console = Console()
errors = Console(stderr=True)

# What a command catches and reports as a message with its exit code (inspect_core.errors): typed usage
# and data errors, an environment failure (the store stayed down), missing or existing paths. Anything
# else is a bug and reaches ``inspect_core.cli.main``, which says so (exit 1, --debug for the traceback).
USER_ERRORS = (UsageError, BadInputError, EnvironmentFailure, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _fail(error: Exception) -> NoReturn:
    """Print ``error`` (its text taken literally, never as markup) and exit with its class's code."""
    errors.print(Text.assemble(("error: ", "bold red"), str(error)), highlight=False, soft_wrap=True)
    raise typer.Exit(code=exit_code_for(error))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )


T = TypeVar("T")


def deprecated(old: str, new: str) -> Any:
    """A hidden option for an old spelling (``--output`` for ``--out``): it still works for one release, with a
    warning on stderr, and is gone from --help. Pair it with :func:`renamed`, which picks whichever was given."""

    def warn(value: object) -> object:
        if value is not None:
            errors.print(f"warning: {old} is deprecated, use {new}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        return value

    return typer.Option(old, hidden=True, callback=warn, help=f"Deprecated spelling of {new}.")


def renamed(value: T | None, old_value: T | None, new: str, old: str) -> T | None:
    """The option's value under its new spelling or its deprecated one; given both ways with different values, a usage error."""
    if old_value is None:
        return value
    if value is not None and value != old_value:
        raise UsageError(f"{new} and {old} are the same option ({old} is its deprecated spelling): give it once, as {new}")
    return old_value


def _collect_images(spec: str) -> list[Path]:
    """``--images``: a folder (searched recursively for image files) or a glob pattern, sorted."""
    from inspect_core.data.importers.image_files import collect_images

    try:
        return collect_images(spec)
    except FileNotFoundError as missing:
        raise FileNotFoundError(f"--images {missing}") from None


def _log_to_stderr() -> None:
    """Show the ingest modules' log lines (reconnects, quarantines) on stderr, rich-formatted."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("inspect_core")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=errors, show_path=False))
        logger.setLevel(logging.INFO)
