"""Small file systems for the hostile store and report tests: a full disk and a read-only folder, made for real.

A tmpfs of a few KiB fills up as a plant's disk does (ENOSPC from the kernel, not a mocked call); a
tmpfs remounted read-only refuses writes even to root (permission bits do not). Mounting needs root:
without it the disk-full cases skip, and a read-only folder falls back to ``chmod`` (which binds a
non-root user, the one it is for).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64k``) mounted at ``path``; skips the test where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("a size-limited tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def resize(path: Path, size: str) -> None:
    """Give a mounted tmpfs more room: space freed on the full disk."""
    assert _mount("-o", f"remount,size={size}", str(path))


@contextmanager
def read_only_folder(path: Path, files: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A folder holding ``files`` that nobody can write into: a read-only tmpfs as root, else ``chmod 0555``."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        for name, content in (files or {}).items():
            (path / name).write_bytes(content)
            (path / name).chmod(0o444)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with tmpfs(path, "1m"):
        for name, content in (files or {}).items():
            (path / name).write_bytes(content)
        if not _mount("-o", "remount,ro", str(path)):
            pytest.skip("cannot remount a tmpfs read-only here")
        yield path
