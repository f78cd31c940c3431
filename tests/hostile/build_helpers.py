"""Shared by the import and build hostile cases: folders written from a spec, the CLI run as a user runs it, tree digests."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest

from inspect_core.cli import main
from tests.conftest import write_image

IMAGE = object()  # a spec value: write a 40x30 image here


class Link:
    """A spec value: a symlink to ``target`` (relative to the case's base folder)."""

    def __init__(self, target: str) -> None:
        self.target = target


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG declaring ``width`` x ``height`` with a single tiny (truncated) data chunk: large on paper, small on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write_tree(base: Path, spec: dict[str, object]) -> None:
    """Files under ``base``: text, bytes, :data:`IMAGE` (a 40x30 image, unique per path), a folder (``{}``) or a :class:`Link`."""
    for index, (name, value) in enumerate(sorted(spec.items())):
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is IMAGE:
            write_image(path, 40, 30, seed=index + 1, rects=[(5, 5, 20, 15)])
        elif isinstance(value, Link):
            os.symlink(base / value.target, path)
        elif isinstance(value, dict):
            path.mkdir(exist_ok=True)
        elif isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(str(value), encoding="utf-8")


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (links listed by target) under ``folder``: equal digests, untouched tree."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "link:" + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "dir"
    return found


def existing_dataset(out: Path) -> dict[str, str]:
    """A previous good dataset at ``out`` (what a failed build must leave alone); returns its digest."""
    write_tree(out, {"dataset.json": '{"classes": ["hole"]}\n', "train/annotations.jsonl": '{"image": "a.jpg"}\n', "train/a.jpg": IMAGE})
    return digest(out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``inspect-core ARGS`` as a user runs it: the exit code and what it printed on stderr (line breaks folded)."""
    capsys.readouterr()
    code = main(list(args))
    return code, " ".join(capsys.readouterr().err.split())


def build(capsys: pytest.CaptureFixture[str], source: Path, out: Path, *extra: str) -> tuple[int, str]:
    return run_cli(capsys, "dataset", "build", "--images", str(source), "--out", str(out), "--overwrite", "--json", *extra)
