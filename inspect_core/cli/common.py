"""What every command shares: the app, the consoles, recipe loading, progress bars and error exits."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from inspect_core.errors import BadInputError, EnvironmentFailure, UsageError, exit_code_for

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error or the machine failed (--debug prints the traceback); "
    "2 usage error (option, recipe key, missing path); 3 bad input data (labels, images, model files)."
)

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

