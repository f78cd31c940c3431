"""Reviewed frames as a Pascal VOC batch folder: what ``dataset build`` and nightly retraining import.

One folder per batch (``labelled/<date>/``), images and LabelImg-style XML side by side, as
``inspect_core.data.importers.pascal_voc`` reads them: ``<filename>`` beside the XML, ``<size>`` equal to
the image, one ``<object>`` per reviewed box with the box in pixels written exactly (Python's shortest
round-trip float, so the import reads back the reviewed numbers, not rounded ones). A frame marked clean
is an XML without objects: a negative example.

The batch is written into a hidden staging folder and renamed into place when complete
(``build_output.atomic_directory``): nightly retraining lists batch folders and skips hidden ones, so it
never trains on half a batch. Before the rename the batch is imported back with the VOC importer, and any
difference from what was meant to be written fails the export instead of the next night's training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from lxml import etree

from inspect_core.data.build_output import atomic_directory
from inspect_core.data.exporters.frames import ExportFrame, latest_per_image
from inspect_core.data.exporters.images import ExportResult, clip, export_name, image_problem, label_problem, place_image
from inspect_core.data.importers import import_dataset
from inspect_core.errors import BadInputError

VOC_DATABASE = "inspect-core review"


def _sub(parent: etree._Element, tag: str, text: object) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = str(text)
    return element


def voc_xml(frame: ExportFrame, filename: str) -> bytes:
    """The LabelImg Pascal VOC annotation of a reviewed frame (its boxes already clipped to the image)."""
    root = etree.Element("annotation")
    _sub(root, "folder", "")
    _sub(root, "filename", filename)
    _sub(root, "path", filename)
    source = etree.SubElement(root, "source")
    _sub(source, "database", VOC_DATABASE)
    _sub(source, "model", frame.model)
    _sub(source, "reviewers", ", ".join(frame.reviewers))
    size = etree.SubElement(root, "size")
    _sub(size, "width", frame.width)
    _sub(size, "height", frame.height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    for labelled in frame.boxes:
        element = etree.SubElement(root, "object")
        _sub(element, "name", labelled.label)
        _sub(element, "pose", "Unspecified")
        x1, y1, x2, y2 = labelled.box
        _sub(element, "truncated", int(x1 <= 0 or y1 <= 0 or x2 >= frame.width or y2 >= frame.height))
        _sub(element, "difficult", 0)
        bndbox = etree.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), labelled.box):
            _sub(bndbox, tag, repr(float(value)))
    etree.indent(root, space="\t")
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="utf-8")


def _clipped(frame: ExportFrame) -> tuple[ExportFrame, int]:
    kept = [(b, clip(b.box, frame.width, frame.height)) for b in frame.boxes]
    boxes = tuple(replace(b, box=c) for b, c in kept if c is not None)
    return replace(frame, boxes=boxes), len(frame.boxes) - len(boxes)


def write_voc_batch(frames: Iterable[ExportFrame], out: Path, overwrite: bool = False, link: bool = True,
                    verify: bool = True) -> ExportResult:  # fmt: skip
    """Write the completely reviewed ``frames`` as a VOC batch at ``out``; one image once (its latest review).

    Partially reviewed frames and frames whose image cannot be used are left out, each listed in
    ``ExportResult.skipped`` with the reason. Nothing to write leaves ``out`` untouched (``result.out`` None).
    ``out`` existing is a ``FileExistsError`` unless ``overwrite``. ``link`` hard-links images where possible.
    """
    result = ExportResult(out=None, format="voc")
    complete = []
    for frame in frames:
        if frame.status == "complete":
            complete.append(frame)
        else:
            why = f"partially reviewed: {frame.undecided} detection(s) without a verdict" if frame.status == "partial" else "not reviewed"
            result.skipped.append((frame.image_path, why))
    planned: list[tuple[ExportFrame, str]] = []
    for frame in latest_per_image(complete):
        frame, dropped = _clipped(frame)
        problem = image_problem(frame) or label_problem([b.label for b in frame.boxes])
        if problem is None and dropped:
            problem = f"{dropped} box(es) lie wholly outside the {frame.width}x{frame.height} image"
        if problem is not None:
            result.skipped.append((frame.image_path, problem))
            continue
        planned.append((frame, export_name(frame)))
    if not planned:
        return result
    boxes: Counter = Counter()
    with atomic_directory(Path(out), overwrite) as staging:
        for frame, name in planned:
            linked = place_image(Path(frame.image_path), staging / name, link)
            result.linked += linked
            result.copied += not linked
            (staging / name).with_suffix(".xml").write_bytes(voc_xml(frame, name))
            boxes.update(b.label for b in frame.boxes)
            result.clean_frames += not frame.boxes
        if verify:
            _verify(staging, planned)
    result.out, result.frames, result.boxes = Path(out), len(planned), dict(sorted(boxes.items()))
    return result


def _verify(staging: Path, planned: list[tuple[ExportFrame, str]]) -> None:
    """Import the staged batch as nightly retraining will, and compare it with what was meant to be written."""
    imported = import_dataset(staging, "voc")
    read = {image.image_path.name: sorted((o.label, o.box) for o in image.objects) for image in imported.images}
    meant = {name: sorted((b.label, tuple(b.box)) for b in frame.boxes) for frame, name in planned}
    if read != meant:
        differing = sorted((read.keys() ^ meant.keys()) | {k for k in read.keys() & meant.keys() if read[k] != meant[k]})
        raise BadInputError(f"the exported batch does not import back as written ({', '.join(differing[:5])}); nothing was exported")
