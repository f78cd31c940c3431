"""Where a dataset build writes: never over its own sources, always atomically, no leftovers.

A build writes into ``.<name>.partial-<pid>`` beside the output and renames it into place only when
complete, so a failed or killed build never touches an existing dataset. Three things this module
adds around that rename, each from a case that lost data or disk:

- ``--out`` equal to, inside or above ``--images`` with ``--overwrite`` replaced (deleted) the
  source labels: refused as a usage error before anything is read.
- a build killed with ``kill -9`` left its ``.partial-<pid>`` folder forever: the next build of
  the same output removes partial folders whose process is dead.
- a kill between "move the old dataset aside" and "move the new one in" would leave only
  ``.<name>.old-<pid>``: the next build puts it back first.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inspect_core.errors import UsageError

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")


def check_output_apart(out: Path, sources: Iterable[Path]) -> None:
    """Refuse an output folder that is, contains or lies inside a source folder (symlinks resolved).

    Replacing such an output deletes labels; writing inside a source makes the next import read
    the built dataset back as labels.
    """
    target = Path(out).resolve()
    for source in sources:
        folder = Path(source).resolve()
        if target == folder:
            relation = "is the labelled folder"
        elif folder.is_relative_to(target):
            relation = "contains the labelled folder"
        elif target.is_relative_to(folder):
            relation = "lies inside the labelled folder"
        else:
            continue
        raise UsageError(f"--out {out} {relation} --images {source}; building there would overwrite labels. Choose an output folder "
                         "outside the source")  # fmt: skip


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_leftovers(out: Path) -> list[Path]:
    """Remove the staging folders of dead builds of ``out``; restore a retired dataset a killed swap left behind.

    A folder whose pid is alive belongs to a build still running (or to an unrelated process that
    reused the pid): it is left alone. Returns the folders removed.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for entry in sorted(out.parent.iterdir()):
        match = _LEFTOVER.match(entry.name)
        if match is None or match["name"] != out.name or pid_alive(int(match["pid"])) or not entry.is_dir():
            continue
        if match["kind"] == "old" and not out.exists():
            entry.rename(out)  # the previous dataset, moved aside by a build killed before its new one was in place
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


@contextmanager
def atomic_directory(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; rename it into place only if the block succeeds."""
    out = Path(out)
    reap_leftovers(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)
