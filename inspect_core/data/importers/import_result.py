"""What an import produced: good images, and every rejected item with its reason.

Importers report per-item problems to an :class:`ImportCollector`; in strict mode the collector
turns them into one :class:`DatasetImportError` listing all of them, in ``--skip-invalid`` mode it
keeps them for the skip report. Duplicate images (same content) are caught here, once, for every
format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from inspect_core.data.annotations import AnnotatedImage, AnnotationError
from inspect_core.data.importers.class_map import ClassMap
from inspect_core.data.importers.dataset_tree import linked_roots, walk_files
from inspect_core.data.importers.image_files import ImageInfo, probe_image
from inspect_core.data.importers.label_files import ensure_inside, is_inside
from inspect_core.errors import BadInputError

MAX_ERRORS_SHOWN = 20


class DatasetImportError(BadInputError):
    """One or more annotation errors in strict mode, or one message about the folder as a whole."""

    def __init__(self, errors: list[AnnotationError] | str) -> None:
        if isinstance(errors, str):
            self.errors: list[AnnotationError] = []
            super().__init__(errors)
            return
        self.errors = errors
        shown = "\n".join(f"  - {e}" for e in errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        super().__init__(f"{len(errors)} invalid annotation(s); fix them or rerun with --skip-invalid:\n{shown}{more}")


@dataclass
class ImportResult:
    format: str
    root: Path
    images: list[AnnotatedImage]
    skipped: list[AnnotationError]
    classes: list[str]


@dataclass
class ImportCollector:
    """Accumulates images and errors; checks content duplicates across the whole dataset.

    Also the one place that decides, for every format, where a file may come from (:meth:`inside`,
    :meth:`files`: the source root and the targets of its linked split folders) and what class a label
    becomes (:meth:`class_name`, through the class map when there is one).
    """

    skip_invalid: bool = False
    root: Path | None = None  # the import root: every image must resolve inside it (None: no check)
    class_map: ClassMap | None = None
    images: list[AnnotatedImage] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    _by_hash: dict[str, Path] = field(default_factory=dict)
    _probed: dict[Path, ImageInfo | str] = field(default_factory=dict)
    _roots: tuple[Path, ...] | None = None
    _files: list[Path] | None = None

    def roots(self) -> tuple[Path, ...]:
        """The folders files may resolve into: the root, then its linked split folders' targets (``dataset_tree``)."""
        if self._roots is None:
            try:
                self._roots = linked_roots(self.root) if self.root is not None else ()
            except AnnotationError as error:  # a split link into a loop or nowhere: the folder as a whole, --skip-invalid or not
                raise DatasetImportError(str(error)) from None
        return self._roots

    def inside(self, path: Path, file: Path | str, location: str, field_name: str) -> Path:
        """``path`` resolved, if it lies in :meth:`roots`; else the escape error naming ``file``."""
        return ensure_inside(self.roots(), path, file, location, field_name)

    def files(self) -> list[Path]:
        """Every file under the root, linked split folders followed; a folder link leading out is rejected (once)."""
        if self._files is None:
            self._files, refused = walk_files(self.root, self.roots())
            self.errors.extend(refused)
        return self._files

    def class_name(self, name: str | None, file: Path | str, location: str, field_name: str, *, key: str | None = None) -> str:
        """The class a label becomes: its ``name`` as it is, or with a class map the map's entry for ``key`` (an id), else for ``name``.

        Without a map a label needs a name (a YOLO id has one from data.yaml); an unmapped label is an error
        naming the file and line, so ``--skip-invalid`` drops that image rather than keep it under a guessed class.
        """
        if self.class_map is not None:
            return self.class_map.lookup(name, key, file, location, field_name)
        if name is None:
            raise AnnotationError(file, location, field_name, f"class {key} has no name")
        return name

    def prefetch(self, paths: Iterable[Path]) -> None:
        """Probe many images in parallel threads ahead of the (ordered) per-item builds."""
        roots = self.roots() if self.root is not None else None
        todo = sorted({p.resolve() for p in paths if roots is None or is_inside(roots, p)} - self._probed.keys())
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            self._probed.update(zip(todo, pool.map(probe_image, todo)))

    def image_info(self, path: Path, file: Path | str, location: str, field_name: str = "image") -> ImageInfo:
        """Size and hash of an image; rejects one outside the import root, unusable files and a second copy of the same content.

        Every importer gets its images' sizes here, so this is the one place the escape check runs
        for all of them (symlinks resolved: a link out of the folder is an escape too).
        """
        path = self.inside(path, file, location, field_name) if self.root is not None else path.resolve()
        info = self._probed.pop(path, None) or probe_image(path)
        if isinstance(info, str):
            raise AnnotationError(file, location, field_name, info)
        first = self._by_hash.get(info.sha256)
        if first is not None:
            what = "is referenced twice" if first == path else f"has the same content as {first}"
            raise AnnotationError(file, location, field_name, f"duplicate image: {path} {what}")
        self._by_hash[info.sha256] = path
        return info

    def attempt(self, build: Callable[[], AnnotatedImage | None]) -> None:
        """Run one item's build; keep its image or record its error."""
        try:
            image = build()
        except AnnotationError as error:
            self.errors.append(error)
            return
        if image is not None:
            self.images.append(image)

    def reject(self, error: AnnotationError) -> None:
        self.errors.append(error)

    def finish(self, format_name: str, root: Path, classes: list[str] | None = None) -> ImportResult:
        if self.errors and not self.skip_invalid:
            raise DatasetImportError(self.errors)
        if self.class_map is not None:
            labels = self.class_map.classes
        else:
            labels = classes if classes is not None else sorted({o.label for i in self.images for o in i.objects})
        return ImportResult(format_name, root, self.images, list(self.errors), labels)
