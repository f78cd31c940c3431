"""Import LabelImg / Pascal VOC XML.

Images are found by ``<filename>`` beside the XML, or in a Pascal-style ``JPEGImages``/``images``
sibling folder. ``<path>`` is ignored: LabelImg stores the labeller's own absolute path there.
Two optional extensions are read: ``<description>`` per object and ``<caption>`` per image.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from inspect_core.annotations import (
    AnnotatedImage,
    AnnotationError,
    DefectObject,
    check_box,
    normalise_split,
    source_key_for,
)
from inspect_core.importers.image_files import IMAGE_SUFFIXES, resolve_image
from inspect_core.importers.import_result import ImportCollector, ImportResult

# No entity expansion, no network: label files come from anywhere.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_IMAGE_FOLDERS = (".", "../JPEGImages", "../images", "JPEGImages", "images")


def voc_files(root: Path) -> list[Path]:
    """XML files under ``root`` (any depth) whose root element is ``<annotation>``."""
    found = []
    for path in sorted(root.rglob("*.xml")):
        try:
            for _event, element in etree.iterparse(str(path), events=("start",), resolve_entities=False, no_network=True):
                if element.tag == "annotation":
                    found.append(path)
                break
        except etree.XMLSyntaxError:
            found.append(path)  # let the importer report the syntax error with its line
    return found


def _where(element: etree._Element, name: str) -> str:
    return f"line {element.sourceline} <{name}>"


def _text(parent: etree._Element, tag: str, path: Path, where: str) -> str:
    child = parent.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(path, where, tag, f"missing <{tag}>")
    return child.text.strip()


def _number(parent: etree._Element, tag: str, path: Path, where: str) -> float:
    text = _text(parent, tag, path, where)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(path, f"line {parent.find(tag).sourceline} <{tag}>", tag, f"not a number: {text!r}") from None


def _find_image(xml_path: Path, filename: str) -> Path:
    for folder in _IMAGE_FOLDERS:
        candidate = (xml_path.parent / folder).resolve()
        if (candidate / filename).is_file():
            return candidate
    return xml_path.parent


def _read(xml_path: Path, root: Path, collector: ImportCollector) -> AnnotatedImage:
    try:
        tree = etree.parse(str(xml_path), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnnotationError(xml_path, f"line {exc.lineno}", "xml", f"malformed XML: {exc.msg}") from exc
    annotation = tree.getroot()
    if annotation.tag != "annotation":
        raise AnnotationError(xml_path, _where(annotation, annotation.tag), "annotation", "root element must be <annotation>")
    filename = _text(annotation, "filename", xml_path, _where(annotation, "annotation"))
    folder = _find_image(xml_path, filename)
    where_file = _where(annotation.find("filename"), "filename")
    image_path = resolve_image(folder, filename, xml_path, where_file, "filename")
    if not image_path.is_relative_to(root.resolve()):
        raise AnnotationError(xml_path, where_file, "filename", f"image {filename!r} lies outside the dataset root")
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
        label = _text(obj, "name", xml_path, where)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(xml_path, where, "bndbox", "missing <bndbox>")
        box_where = _where(bndbox, "bndbox")
        coords = tuple(_number(bndbox, tag, xml_path, box_where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        box = check_box(coords, info.width, info.height, xml_path, box_where, "bndbox")
        description = obj.findtext("description")
        objects.append(DefectObject(label=label, box=box, description=description.strip() if description and description.strip() else None))
    caption = annotation.findtext("caption")
    relative = xml_path.relative_to(root)
    return AnnotatedImage(
        image_path=image_path,
        width=info.width,
        height=info.height,
        objects=tuple(objects),
        caption=caption.strip() if caption and caption.strip() else None,
        split=normalise_split(relative.parts[0]) if len(relative.parts) > 1 else None,
        source_key=source_key_for(image_path),
        sha256=info.sha256,
    )


def import_pascal_voc(root: Path, collector: ImportCollector) -> ImportResult:
    files = voc_files(root)
    if not files:
        raise AnnotationError(root, "dataset root", "xml", "no Pascal VOC <annotation> XML files found")
    collector.prefetch(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for xml_path in files:
        collector.attempt(lambda xml_path=xml_path: _read(xml_path, root, collector))
    return collector.finish("voc", root)
