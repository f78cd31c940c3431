"""Putting a frame's image into an export folder: checked against the store, named uniquely, hard-linked or copied.

An exported label is only as good as the image beside it, so each image is probed (decoded, hashed) first:
a file gone, unreadable, or no longer the image the store scored (another sha256, another size) is left
out with the reason, never written next to labels drawn on a different picture.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from inspect_core.data.annotations import Box, text_problem
from inspect_core.data.exporters.frames import ExportFrame
from inspect_core.data.importers.image_files import IMAGE_SUFFIXES, probe_image, shown_path
from inspect_core.errors import EnvironmentFailure

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80


@dataclass
class ExportResult:
    """What an export wrote: ``out`` (None when nothing was written), frames, boxes per class, and what was left out."""

    out: Path | None
    format: str
    frames: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    clean_frames: int = 0
    linked: int = 0
    copied: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image path, why it was left out)

    def as_dict(self) -> dict:
        return {"out": None if self.out is None else str(self.out), "format": self.format, "frames": self.frames, "boxes": self.boxes,
                "clean_frames": self.clean_frames, "linked": self.linked, "copied": self.copied,
                "skipped": [{"image": image, "reason": reason} for image, reason in self.skipped]}  # fmt: skip


def export_name(frame: ExportFrame) -> str:
    """A file name unique per image content, readable, and safe on any filesystem: ``<stem>-<sha256[:12]><suffix>``."""
    source = Path(frame.image_path)
    stem = _UNSAFE.sub("_", source.stem).strip("._-")[:MAX_STEM] or "image"
    return f"{stem}-{frame.sha256[:12]}{source.suffix.lower()}"


def image_problem(frame: ExportFrame) -> str | None:
    """Why the frame's image cannot be exported, or None: missing, undecodable, or not the image the store scored."""
    path = Path(frame.image_path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"{path.suffix or 'no suffix'} is not an image suffix the importers read ({', '.join(IMAGE_SUFFIXES)})"
    if not path.is_file():
        return "image file not found (moved or deleted since it was scored)"
    info = probe_image(path)
    if isinstance(info, str):
        return info
    if info.sha256 != frame.sha256:
        return f"the file changed since it was scored (sha256 {info.sha256[:12]}..., the store has {frame.sha256[:12]}...)"
    if (info.width, info.height) != (frame.width, frame.height):
        return f"the file is {info.width}x{info.height}, the store has {frame.width}x{frame.height}"
    return None


def label_problem(labels: list[str]) -> str | None:
    for label in labels:
        problem = text_problem(label)
        if problem is not None:
            return f"class {label!r} {problem}"
    return None


def clip(box: Box, width: int, height: int) -> Box | None:
    """The box inside the image, or None when nothing of it is left (the importers refuse boxes outside)."""
    x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def place_image(source: Path, target: Path, link: bool) -> bool:
    """Put ``source`` at ``target``: a hard link when asked and possible (same filesystem), else a copy. True if linked.

    Hard links cost no space and the images are never modified in place; a copy is used across filesystems
    or where links are not allowed. A full disk is the machine's failure, said as such.
    """
    if link:
        try:
            os.link(source, target)
            return True
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise _failure(target, error) from None
    try:
        shutil.copyfile(source, target)
    except OSError as error:
        raise _failure(target, error) from None
    return False


def _failure(target: Path, error: OSError) -> Exception:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return EnvironmentFailure(f"export to {shown_path(target.parent)} failed: {error.strerror or error}; nothing was exported")
    return error
