"""Safe access to the files of a labelled folder: one containment rule and one text-decoding rule.

Label folders come from annotators, exports and shared drives. Two things went wrong when each
importer opened files its own way: a COCO JSON at the root or a symlinked YOLO image pulled files
from *outside* the folder into a training set (VOC alone refused), and a label file that was not
UTF-8 (or was a directory) ended in a traceback instead of a message naming the file. Every importer
now reads label files and checks image and label paths through the two functions here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inspect_core.data.annotations import AnnotationError


def _roots(root: Path | Sequence[Path]) -> list[Path]:
    return [Path(r).resolve() for r in ([root] if isinstance(root, (str, Path)) else root)]


def ensure_inside(root: Path | Sequence[Path], path: Path, file: Path | str, location: str, field: str) -> Path:
    """``path`` with symlinks resolved, if it lies under ``root`` (also resolved); else an error naming ``file``.

    Resolving first is the point: a symlink inside the folder that points elsewhere is an escape
    just like ``../outside.jpg``. ``root`` may be several folders (the source root first, then the
    targets of its linked split folders, :func:`~inspect_core.data.importers.dataset_tree.linked_roots`);
    messages name the first.
    """
    roots = _roots(root)
    real = Path(path).resolve()
    if not any(real.is_relative_to(r) for r in roots):
        shown = path if Path(path) == real else f"{path} (a link to {real})"
        named = root if isinstance(root, (str, Path)) else root[0]
        raise AnnotationError(file, location, field, f"{shown} escapes the dataset root {named}")
    return real


def is_inside(root: Path | Sequence[Path], path: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies under ``root`` (or one of several roots): for filtering file walks and prefetches."""
    real = Path(path).resolve()
    return any(real.is_relative_to(r) for r in _roots(root))


def read_bytes(path: Path, field: str = "file") -> bytes:
    """A label file's bytes; a directory, an unreadable file or a vanished one is an error naming it."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise AnnotationError(path, "file", field, "is a directory, not a label file") from None
    except OSError as exc:
        raise AnnotationError(path, "file", field, f"cannot read: {exc.strerror or exc}") from None


def decode_utf8(data: bytes, path: Path, field: str = "encoding", hint: str = "save the file as UTF-8") -> str:
    """UTF-8 text (a leading BOM is dropped), or an error naming the file, line and byte that are not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); {hint}"
        raise AnnotationError(path, f"line {line}", field, problem) from None


def read_text(path: Path, field: str = "encoding") -> str:
    """A label file as UTF-8 text, with the errors of :func:`read_bytes` and :func:`decode_utf8`."""
    return decode_utf8(read_bytes(path), path, field)


def is_file(path: Path) -> bool:
    """``path.is_file()`` that is False, not an exception, for a name with a NUL byte or too long for the file system."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
