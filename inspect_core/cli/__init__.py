"""The ``inspect-core`` command line (typer + rich), one module per command group.

Each command is a thin shell over the library: parse options, call one function, print a summary
(``--json`` for machines). ``main`` is the console script: it maps every error that escapes a
command to the exit codes of :mod:`inspect_core.errors` (0 ok, 1 internal, 2 usage, 3 bad data).
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer
from rich.text import Text

import inspect_core.cli.review  # noqa: F401  (registers `inspect-core review`)
from inspect_core import __version__
from inspect_core.cli import app as _app_command  # noqa: F401  (registers `inspect-core app`)
from inspect_core.cli import config, dataset, demo, ingest, predict, report, scoring, training  # noqa: F401  (registers the commands)
from inspect_core.cli.common import app, errors
from inspect_core.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, exit_code_for, is_expected

__all__ = ["app", "main"]

_debug = {"on": False}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"inspect-core {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Print the full traceback of an internal error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Fabric defect inspection with Florence-2: build datasets, fine-tune, score, report."""
    _debug["on"] = debug


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and, as the console script, exits with) the exit code.

    Commands report the errors they expect themselves (``_fail``); what reaches here is either a
    click usage error (exit 2) or something nobody expected: an internal error (exit 1) with its
    one-line cause and, with ``--debug``, the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        returned = command.main(args=args, prog_name="inspect-core", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        errors.print("aborted", highlight=False)
        return 130
    except typer.TyperException as usage:  # click's usage errors (typer vendors click): no such option, bad value
        usage.show()
        return int(getattr(usage, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        errors.print("interrupted", highlight=False)
        return 130
    except Exception as error:  # the one place that turns an unexpected error into an exit code
        code = exit_code_for(error)
        if is_expected(error):
            errors.print(Text.assemble(("error: ", "bold red"), str(error)), highlight=False, soft_wrap=True)
            return code
        if _debug["on"] or "--debug" in args:
            traceback.print_exception(error)
        errors.print(Text.assemble(("internal error: ", "bold red"), f"{type(error).__name__}: {error}"), highlight=False, soft_wrap=True)
        if not (_debug["on"] or "--debug" in args):
            errors.print("this is a bug in inspect-core; run again with --debug for the full traceback and report it", highlight=False)
        return EXIT_INTERNAL
    return returned if isinstance(returned, int) else EXIT_OK  # click returns a command's typer.Exit code here


def console_script() -> None:
    """Entry point of the ``inspect-core`` executable."""
    sys.exit(main())
