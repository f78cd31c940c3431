"""The error taxonomy behind the command line's exit codes; no heavy imports (the CLI reads it without torch).

A plant's scripts call ``inspect-core`` from cron and Prefect and need to tell apart "you called me
wrong" (fix the command), "your data is bad" (fix the file, the batch is not lost) and "this is a bug
or the machine failed" (page someone). So the library raises typed errors and the CLI maps each class
to one exit code, in one place (``inspect_core.cli.main``):

==== =========================================================================================
0    success
1    internal error: a bug, or the environment failed (database down, disk full); ``--debug``
     prints the full traceback
2    usage error: an unknown option or recipe key, a bad option value, a missing input path,
     an output that exists without ``--overwrite``
3    bad input data: labels, images, a model folder or a file's content that cannot be used
==== =========================================================================================

The classes derive from ``ValueError`` (usage and data) so code that caught ``ValueError`` before
still catches them; a bare ``ValueError`` from inside the library is *not* a user error: it exits 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_DATA = 3


class UsageError(ValueError):
    """The command, an option or a recipe setting is wrong: exit 2."""

    exit_code = EXIT_USAGE


class BadInputError(ValueError):
    """Input data (labels, an image, a model folder, a file's content) cannot be used: exit 3."""

    exit_code = EXIT_BAD_DATA


class ModelLoadError(BadInputError):
    """A model that cannot be loaded, with what to do about it: exit 3."""


class EnvironmentFailure(RuntimeError):
    """The machine, not the input, failed (the database stayed down, the disk is full): exit 1, without a bug hint."""

    exit_code = EXIT_INTERNAL


def exit_code_for(error: BaseException) -> int:
    """The exit code of an error: its class's ``exit_code``; missing or existing paths are usage errors; anything else is a bug."""
    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(error, (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
        return EXIT_USAGE
    return EXIT_INTERNAL


def is_expected(error: BaseException) -> bool:
    """Errors whose message is the whole story (no traceback hint): typed errors and path errors."""
    return isinstance(error, (UsageError, BadInputError, EnvironmentFailure, FileNotFoundError, FileExistsError,
                              NotADirectoryError, IsADirectoryError))  # fmt: skip
