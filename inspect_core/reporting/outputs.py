"""Where report files go: checked before any query runs, and written so a failure leaves no half file.

A report's ``--out`` file must sit in a folder that exists (a typo in the folder is a message naming
it, not a tree of new folders), must not be a folder, and must not be the results store it reads.
``--plots`` and ``--annotate`` are folders: created if missing, but never over a file and never
inside a folder that cannot be written. Files are written beside their target and renamed over it,
so a full disk or a kill mid-write leaves the previous report as it was, not a truncated one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inspect_core.errors import EnvironmentFailure, UsageError


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_file(path: Path, option: str, protected: Iterable[Path] = ()) -> None:
    """``path`` can be written as one file: its folder exists, it is not a folder, not read-only, not a protected file."""
    try:
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file name such as {path / 'defects.csv'}")
        target = path.resolve()
        for other in protected:
            if target == other.resolve():
                raise UsageError(f"{option} {path} is the results store itself; writing the report there would destroy it")
        parent = path.parent
        if not parent.exists():
            raise UsageError(f"{option} {path}: folder {parent} does not exist (create it first; reports do not make folders for a file)")
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: {parent} is not a folder")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path} cannot be written: permission denied")
        if not path.exists() and not _writable(parent):
            raise UsageError(f"{option} {path}: folder {parent} cannot be written: permission denied")
    except OSError as error:  # a name too long, a loop of links
        raise UsageError(f"{option} {path}: {error.strerror or error}") from None


def check_output_folder(path: Path, option: str) -> None:
    """``path`` is (or can become) a folder this process writes into."""
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{option} {path} is a file, not a folder; give a folder for the report's images")
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
        if not _writable(existing):
            raise UsageError(f"{option} {path}: folder {existing} cannot be written: permission denied")
    except OSError as error:
        raise UsageError(f"{option} {path}: {error.strerror or error}") from None


def write_failure(path: Path, error: OSError, option: str) -> Exception:
    """The error for a report file that could not be written: a full disk is the machine's, anything else the user's to fix."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return EnvironmentFailure(f"{option} {path}: {reason}; the report was not written (an earlier file there is unchanged)")
    return UsageError(f"{option} {path} cannot be written: {reason}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed over it when the block succeeds and removed when it fails.

    Devices and pipes (``/dev/stdout``, a FIFO) are written directly: they cannot be renamed over.
    """
    if path.exists() and not path.is_file():
        yield path
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    written = Path(temporary)
    try:
        yield written
        os.replace(written, path)
    finally:
        written.unlink(missing_ok=True)


def write_file(path: Path, option: str, write: Callable[[Path], None]) -> None:
    """Run ``write`` into ``path`` atomically (``replacing``); OS errors become messages naming ``option`` and the file."""
    try:
        with replacing(path) as target:
            write(target)
    except OSError as error:
        raise write_failure(path, error, option) from None
