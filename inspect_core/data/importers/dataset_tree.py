"""Which files belong to a labelled folder, symbolic links included.

Plants keep the pictures on a share and link them into the export (``train -> /mnt/nas/2026-11/train``).
``Path.rglob`` does not descend into a linked folder (Python < 3.13), so such a source imported 0
images and the build exited 0. The rule now, one for every importer:

- A link to a **whole layout folder** is followed wherever it points, as if the folder were copied in:
  a split (``train``, ``valid``/``val``/``validation``, ``test``) or a data folder (``images``,
  ``labels``, ``masks``, ``annotations``, ``JPEGImages``) at the top of the source, or one such folder
  one level down (``train/images``, ``images/train``). Its target joins the dataset roots that the
  escape check accepts. That is the shape of a deliberate "the data lives elsewhere" link.
- A whole-folder link whose target holds the source itself (``train -> ..``, ``images -> /``) is
  refused: the import would walk the source in a loop, or the whole disk.
- **Any other link** (to one image, one label file, some other folder) must resolve inside the source
  or inside one of those targets. One that leads out is refused, naming the link and its target: that
  is how a file from outside ends up in a training set by accident (or on purpose).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from inspect_core.data.annotations import AnnotationError, normalise_split

LAYOUT_FOLDERS = frozenset({"images", "labels", "masks", "annotations", "jpegimages"})


def is_layout_folder(name: str) -> bool:
    """A split folder or a data folder of one of the supported layouts (case-insensitive)."""
    return normalise_split(name) is not None or name.lower() in LAYOUT_FOLDERS


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def layout_links(root: Path) -> list[Path]:
    """The whole-layout-folder links of ``root``: ``root/<layout>`` and ``root/<layout>/<layout>`` that are symlinks."""
    found = []
    for entry in _entries(root):
        if not is_layout_folder(entry.name):
            continue
        if entry.is_symlink():
            found.append(entry)
        if entry.is_dir():
            found += [child for child in _entries(entry) if is_layout_folder(child.name) and child.is_symlink()]
    return found


def linked_roots(root: Path) -> tuple[Path, ...]:
    """The resolved source root, then the resolved targets of its whole-layout-folder links (see the module doc)."""
    real = Path(root).resolve()
    roots = [real]
    for link in layout_links(Path(root)):
        target = link.resolve()
        if not target.is_dir():
            raise AnnotationError(link, "file", "link", f"a link to {target}, which is not a folder (a broken link?)")
        if real.is_relative_to(target):
            raise AnnotationError(link, "file", "link", f"a link to {target}, which holds the dataset itself: the import would walk it "
                                  "in a loop; link the split's own folder instead")  # fmt: skip
        if target not in roots:
            roots.append(target)
    return tuple(roots)


def walk_files(root: Path, roots: Sequence[Path]) -> tuple[list[Path], list[AnnotationError]]:
    """Every file under ``root`` (sorted), following linked folders whose targets lie in ``roots``, each real folder once;
    and one error per folder link that leads out of ``roots`` (not followed)."""
    files: list[Path] = []
    refused: list[AnnotationError] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = Path(dirpath).resolve()
        if real in seen:  # a second link to a folder already walked (or a link back up): once is enough
            dirnames[:] = []
            continue
        seen.add(real)
        kept = []
        for name in sorted(dirnames):
            path = Path(dirpath, name)
            target = path.resolve() if path.is_symlink() else None
            if target is not None and not any(target.is_relative_to(r) for r in roots):
                refused.append(AnnotationError(path, "file", "link", f"a folder link to {target}, outside the dataset root {root}; only "
                                               "whole split or data folders (train/, valid/, test/, images/, labels/, ...) may link "
                                               "outside it"))  # fmt: skip
                continue
            kept.append(name)
        dirnames[:] = kept
        files += [Path(dirpath, name) for name in filenames]
    return sorted(files), refused
