"""Safe resolution and checking of the image files that annotations point at.

Every importer funnels image references through here, so path escapes, missing files and
undecodable images are rejected the same way whatever the label format.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspect_core.annotations import AnnotationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Refuse decompression bombs early: a 20k x 20k frame is already larger than any loom camera.
Image.MAX_IMAGE_PIXELS = 400_000_000


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    sha256: str


def resolve_image(root: Path, reference: str, file: Path | str, location: str, field: str) -> Path:
    """Resolve an annotation's image reference inside ``root``; reject escapes and missing files."""
    if not reference or not reference.strip():
        raise AnnotationError(file, location, field, "image reference is empty")
    if PurePosixPath(reference).is_absolute() or PureWindowsPath(reference).is_absolute():
        raise AnnotationError(file, location, field, f"absolute image path {reference!r} is not allowed")
    if ".." in PurePosixPath(reference.replace("\\", "/")).parts:
        raise AnnotationError(file, location, field, f"image path {reference!r} escapes the dataset root")
    path = (root / reference).resolve()
    if not path.is_relative_to(root.resolve()):
        raise AnnotationError(file, location, field, f"image path {reference!r} escapes the dataset root")
    if not path.is_file():
        raise AnnotationError(file, location, field, f"image {reference!r} not found in {root}")
    return path


def try_resolve(root: Path, reference: str) -> Path | None:
    """:func:`resolve_image` that returns None instead of raising: for prefetching."""
    try:
        return resolve_image(root, reference, "", "", "")
    except AnnotationError:
        return None


def _decode_error(path: Path, exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return f"cannot decode image {path.name}: not an image file (format not recognised)"
    return f"cannot decode image {path.name}: {exc}"


def _read_bytes(path: Path) -> bytes | str:
    """A file's bytes, or why there are none to decode (unreadable, empty)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read image {path.name}: {exc}"
    return data if data else f"image {path.name} is an empty file"


def probe_image(path: Path) -> ImageInfo | str:
    """Size and content hash of an image, or the reason it cannot be used.

    The image is decoded fully so truncated files are caught; JPEGs decode in draft mode (DCT-scaled
    to 1/8), which still reads the whole stream at a fraction of the cost. Thread-safe: Pillow and
    hashlib release the GIL, so probes run in parallel threads.
    """
    data = _read_bytes(path)
    if isinstance(data, str):
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return _decode_error(path, exc)
    return ImageInfo(width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def read_image(path: Path) -> tuple[np.ndarray, str] | str:
    """RGB pixels and content sha256 of an image, or the reason it cannot be used (for quarantine).

    Over ``Image.MAX_IMAGE_PIXELS`` counts as a decompression bomb (Pillow would only warn below
    twice that).
    """
    data = _read_bytes(path)
    if isinstance(data, str):
        return data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _decode_error(path, exc)
    return pixels, hashlib.sha256(data).hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name for deterministic order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
