"""Safe resolution and checking of the image files that annotations point at.

Every importer funnels image references through here, so path escapes, missing files and
undecodable images are rejected the same way whatever the label format.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspect_core.data.annotations import AnnotationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Refuse decompression bombs early: a 20k x 20k frame is already larger than any loom camera.
Image.MAX_IMAGE_PIXELS = 400_000_000
# The decode budget, checked from the header before a pixel is decoded: a 20000x20000 PNG is 1.1 MB on
# disk but 1.2 GB as RGB (6.4 GB at the peak of Pillow's conversions). 100 megapixels is twice the largest
# area camera or a 16k x 6k line-scan strip; anything bigger is a corrupt header or a decompression bomb.
MAX_DECODE_PIXELS = 100_000_000


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
    try:
        path = (root / reference).resolve()
        if not path.is_relative_to(root.resolve()):
            raise AnnotationError(file, location, field, f"image path {reference!r} escapes the dataset root")
        found = path.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        if isinstance(exc, AnnotationError):
            raise
        raise AnnotationError(file, location, field, f"unusable image path {reference[:200]!r}: {exc}") from None
    if not found:
        raise AnnotationError(file, location, field, f"image {reference!r} not found in {root}")
    return path


def try_resolve(root: Path, reference: str) -> Path | None:
    """:func:`resolve_image` that returns None instead of raising: for prefetching."""
    try:
        return resolve_image(root, reference, "", "", "")
    except AnnotationError:
        return None


def shown_path(path: Path | str) -> str:
    """A path as text that any store, log or terminal takes: bytes that are not UTF-8 shown as ``\\xff`` escapes.

    Linux file names are bytes; Python carries undecodable ones as lone surrogates (``bad_\\udcff.png``),
    which a database driver, ``print`` or JSON consumer refuses. This is the one rendering of such names.
    """
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def name_problem(path: Path | str) -> str | None:
    """Why a file's path cannot be recorded as it is (not valid UTF-8), or None; the policy of every file walk.

    The store keeps each image's path so reports and annotations find the file again; a name that is not
    UTF-8 cannot be stored faithfully, so the file is quarantined under its :func:`shown_path` and the
    rest of the batch goes on (renaming it to UTF-8 lets the next run take it).
    """
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return f"file name {shown_path(path)} is not valid UTF-8: rename it (the store keeps paths as UTF-8 text)"
    return None


def _name(path: Path) -> str:
    return shown_path(path.name)


def _pixel_budget() -> int:
    return min(MAX_DECODE_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_DECODE_PIXELS)


def _over_budget(path: Path, image: Image.Image) -> str | None:
    """Why an opened (not yet decoded) image is too big to decode, from its header's size; None when it fits."""
    width, height = image.size
    if width * height <= _pixel_budget():
        return None
    return (
        f"image {_name(path)} is {width}x{height} ({width * height / 1e6:.1f} megapixels): over the decode budget of "
        f"{_pixel_budget() / 1e6:g} megapixels, refused as a possible decompression bomb before decoding"
    )


def _decode_error(path: Path, exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return f"cannot decode image {_name(path)}: not an image file (format not recognised)"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        budget = f"over the decode budget of {_pixel_budget() / 1e6:g} megapixels"  # Pillow refused it at open, from the header
        return f"image {_name(path)} is {budget}, refused as a possible decompression bomb before decoding ({exc})"
    if isinstance(exc, OSError):  # Pillow's own words: "image file is truncated", "broken PNG file"
        return f"cannot decode image {_name(path)}: {exc}"
    return f"cannot decode image {_name(path)}: {type(exc).__name__}: {exc}"


def _read_bytes(path: Path) -> bytes | str:
    """A file's bytes, or why there are none to decode (unreadable, empty)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read image {_name(path)}: {exc}"
    return data if data else f"image {_name(path)} is an empty file"


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
            if too_big := _over_budget(path, image):
                return too_big
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception as exc:  # hostile bytes make decoders raise anything (struct.error, IndexError, ...): the file's fault
        return _decode_error(path, exc)
    return ImageInfo(width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def read_image(path: Path) -> tuple[np.ndarray, str] | str:
    """RGB pixels and content sha256 of an image, or the reason it cannot be used (for quarantine).

    Pillow opens lazily, so the size in the header is checked against the decode budget
    (``MAX_DECODE_PIXELS``, or ``Image.MAX_IMAGE_PIXELS`` if lower) before any pixel is decoded.
    """
    data = _read_bytes(path)
    if isinstance(data, str):
        return data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if too_big := _over_budget(path, image):
                    return too_big
                pixels = np.asarray(image.convert("RGB"))
    except Exception as exc:  # hostile bytes make decoders raise anything (struct.error, IndexError, ...): the file's fault
        return _decode_error(path, exc)
    return pixels, hashlib.sha256(data).hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name for deterministic order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def collect_images(spec: str | Path) -> list[Path]:
    """Image files to score: a folder (searched recursively) or a glob pattern such as ``frames/**/*.png``, sorted."""
    import glob

    folder = Path(spec).expanduser()
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    matches = sorted(Path(p) for p in glob.glob(str(folder), recursive=True) if Path(p).is_file())
    if not matches:
        raise FileNotFoundError(f"{spec}: no such folder, and the pattern matches no file")
    return matches
