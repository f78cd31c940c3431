"""Import LabelImg / Pascal VOC XML.

Images are found by ``<filename>`` beside the XML, or in a Pascal-style ``JPEGImages``/``images``
sibling folder. ``<path>`` is ignored: LabelImg stores the labeller's own absolute path there.
Two optional extensions are read: ``<description>`` per object and ``<caption>`` per image.

The file is decoded as its XML declaration says (LabelImg on Windows writes Latin-1 with a
declaration); a file without one must be UTF-8. Entities are never expanded: no external entity
reads a local file, no nested entities blow up memory.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from lxml import etree

from inspect_core.data.annotations import (
    AnnotatedImage,
    AnnotationError,
    DefectObject,
    check_box,
    check_text,
    normalise_split,
    source_key_for,
)
from inspect_core.data.importers.dataset_tree import linked_roots, walk_files
from inspect_core.data.importers.image_files import IMAGE_SUFFIXES, resolve_image
from inspect_core.data.importers.import_result import ImportCollector, ImportResult
from inspect_core.data.importers.label_files import decode_utf8, is_file, read_bytes

# No entity expansion, no network: label files come from anywhere.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_IMAGE_FOLDERS = (".", "../JPEGImages", "../images", "JPEGImages", "images")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*\bencoding\s*=", re.IGNORECASE)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def voc_files(root: Path, files: list[Path] | None = None) -> list[Path]:
    """XML files under ``root`` (any depth, linked split folders followed; or among ``files``) whose root element is ``<annotation>``.

    A file that does not parse is kept, so the importer reports it with its line.
    """
    found = []
    for path in files if files is not None else walk_files(root, linked_roots(root))[0]:
        if path.suffix.lower() != ".xml" or not path.is_file():
            continue
        try:
            data = read_bytes(path)
            for _event, element in etree.iterparse(io.BytesIO(data), events=("start",), resolve_entities=False, no_network=True):
                if element.tag == "annotation":
                    found.append(path)
                break
        except (etree.XMLSyntaxError, AnnotationError, ValueError, LookupError):
            found.append(path)
    return found


def parse_xml(xml_path: Path) -> etree._Element:
    """The root element of a label file, decoded per its declaration; errors name the file and line."""
    data = read_bytes(xml_path, "xml")
    if not data.startswith(_BOMS) and not _DECLARED_ENCODING.match(data[:512]):
        decode_utf8(data, xml_path, hint="declare the encoding (<?xml version='1.0' encoding='ISO-8859-1'?>) or save the file as UTF-8")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnnotationError(xml_path, f"line {exc.lineno}", "xml", f"malformed XML: {exc.msg}") from None
    except (ValueError, LookupError) as exc:  # an unknown declared encoding, for one
        raise AnnotationError(xml_path, "line 1", "xml", f"cannot decode XML: {exc}") from None
    if root is None:
        raise AnnotationError(xml_path, "line 1", "xml", "no XML element")
    return root


def _where(element: etree._Element, name: str) -> str:
    return f"line {element.sourceline} <{name}>"


def _text(parent: etree._Element, tag: str, path: Path, where: str) -> str:
    child = parent.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(path, where, tag, f"missing <{tag}>")
    return child.text.strip()


def _number(parent: etree._Element, tag: str, path: Path, where: str) -> float:
    text = _text(parent, tag, path, where)
    where_tag = f"line {parent.find(tag).sourceline} <{tag}>"
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, where_tag, tag, f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(path, where_tag, tag, f"not a finite number: {text!r}")
    return value


def _optional_text(parent: etree._Element, tag: str, path: Path, where: str) -> str | None:
    text = parent.findtext(tag)
    if text is None or not text.strip():
        return None
    return check_text(text, path, _where(parent.find(tag), tag) if parent.find(tag) is not None else where, tag)


def _find_image(xml_path: Path, filename: str) -> Path:
    for folder in _IMAGE_FOLDERS:
        candidate = (xml_path.parent / folder).resolve()
        if is_file(candidate / filename):
            return candidate
    return xml_path.parent


def _read(xml_path: Path, root: Path, collector: ImportCollector) -> AnnotatedImage:
    collector.inside(xml_path, xml_path, "file", "xml")
    annotation = parse_xml(xml_path)
    if annotation.tag != "annotation":
        raise AnnotationError(xml_path, _where(annotation, str(annotation.tag)), "annotation", "root element must be <annotation>")
    filename = _text(annotation, "filename", xml_path, _where(annotation, "annotation"))
    folder = _find_image(xml_path, filename)
    where_file = _where(annotation.find("filename"), "filename")
    image_path = resolve_image(folder, filename, xml_path, where_file, "filename")
    info = collector.image_info(image_path, xml_path, where_file, "filename")
    size = annotation.find("size")
    if size is not None and size.find("width") is not None:
        declared = (
            int(_number(size, "width", xml_path, _where(size, "size"))),
            int(_number(size, "height", xml_path, _where(size, "size"))),
        )
        if declared != (info.width, info.height):
            raise AnnotationError(
                xml_path,
                _where(size, "size"),
                "size",
                f"declares {declared[0]}x{declared[1]} but {filename} is {info.width}x{info.height}",
            )
    objects = []
    for index, obj in enumerate(annotation.findall("object")):
        where = f"{_where(obj, 'object')} #{index}"
        name_where = _where(obj.find("name"), "name") if obj.find("name") is not None else where
        label = collector.class_name(
            check_text(_text(obj, "name", xml_path, where), xml_path, name_where, "name"), xml_path, name_where, "name"
        )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(xml_path, where, "bndbox", "missing <bndbox>")
        box_where = _where(bndbox, "bndbox")
        coords = tuple(_number(bndbox, tag, xml_path, box_where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        box = check_box(coords, info.width, info.height, xml_path, box_where, "bndbox")
        objects.append(DefectObject(label=label, box=box, description=_optional_text(obj, "description", xml_path, where)))
    relative = xml_path.relative_to(root)
    return AnnotatedImage(
        image_path=image_path,
        width=info.width,
        height=info.height,
        objects=tuple(objects),
        caption=_optional_text(annotation, "caption", xml_path, _where(annotation, "annotation")),
        split=normalise_split(relative.parts[0]) if len(relative.parts) > 1 else None,
        source_key=source_key_for(image_path),
        sha256=info.sha256,
    )


def import_pascal_voc(root: Path, collector: ImportCollector) -> ImportResult:
    if collector.root is None:
        collector.root = root
    tree = collector.files()
    files = voc_files(root, tree)
    if not files:
        raise AnnotationError(root, "dataset root", "xml", "no Pascal VOC <annotation> XML files found")
    collector.prefetch(p for p in tree if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for xml_path in files:
        collector.attempt(lambda xml_path=xml_path: _read(xml_path, root, collector))
    return collector.finish("voc", root)
