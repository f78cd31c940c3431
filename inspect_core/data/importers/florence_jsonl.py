"""Import Florence JSONL datasets in the maestro layout.

``root/{train,valid,test}/annotations.jsonl`` (or a single ``root/annotations.jsonl``), one JSON
object per line with ``image`` (relative to the file's folder), ``prefix`` and ``suffix``. The
records of one image are merged back into one annotation: ``<OD>`` gives classes and boxes,
``<DENSE_REGION_CAPTION>`` the descriptions of the same boxes, grounding the caption.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from inspect_core.data.annotations import AnnotatedImage, AnnotationError, DefectObject, check_text, normalise_split, source_key_for
from inspect_core.data.florence_tasks import TASK_PROMPTS, TaskRecord, parse_target, task_of_prefix
from inspect_core.data.importers.image_files import resolve_image, try_resolve
from inspect_core.data.importers.import_result import ImportCollector, ImportResult
from inspect_core.data.importers.label_files import read_text
from inspect_core.data.loc_tokens import decode_box

ANNOTATIONS_FILE = "annotations.jsonl"


def annotation_files(root: Path) -> list[Path]:
    """The JSONL files of a dataset: one per split folder, or one at the root."""
    files = sorted(p for p in root.glob(f"*/{ANNOTATIONS_FILE}") if normalise_split(p.parent.name))
    if (root / ANNOTATIONS_FILE).is_file():
        files.insert(0, root / ANNOTATIONS_FILE)
    return files


def _read_lines(path: Path, collector: ImportCollector) -> dict[str, dict[str, tuple[int, str, str]]]:
    """Per image, per task: (line number, prefix, suffix). Bad lines (and an unreadable file) go to the collector."""
    by_image: dict[str, dict[str, tuple[int, str, str]]] = {}
    try:
        text = read_text(path)
    except AnnotationError as error:
        collector.reject(error)
        return by_image
    with io.StringIO(text, newline=None) as handle:  # universal newlines, as reading the file in text mode
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                collector.reject(AnnotationError(path, where, "json", f"malformed JSON: {exc.msg} at column {exc.colno}"))
                continue
            except RecursionError:
                collector.reject(AnnotationError(path, where, "json", "JSON nested too deeply"))
                continue
            if not isinstance(record, dict):
                collector.reject(AnnotationError(path, where, "json", "expected a JSON object"))
                continue
            missing = [k for k in ("image", "prefix", "suffix") if not isinstance(record.get(k), str)]
            if missing:
                collector.reject(AnnotationError(path, where, missing[0], "missing or not a string"))
                continue
            try:
                task = task_of_prefix(record["prefix"])
            except ValueError as exc:
                collector.reject(AnnotationError(path, where, "prefix", str(exc)))
                continue
            tasks = by_image.setdefault(record["image"], {})
            if task in tasks:
                collector.reject(
                    AnnotationError(
                        path, where, "prefix", f"duplicate {task} record for {record['image']!r} (first on line {tasks[task][0]})"
                    )
                )
                continue
            tasks[task] = (number, record["prefix"], record["suffix"])
    return by_image


def _parse(
    path: Path, line: int, suffix: str, width: int, height: int
) -> list[tuple[str, tuple[int, int, int, int], tuple[float, float, float, float]]]:
    try:
        pairs = parse_target(suffix)
    except ValueError as exc:
        raise AnnotationError(path, f"line {line}", "suffix", str(exc)) from exc
    parsed = []
    for text, boxes in pairs:
        text = check_text(text, path, f"line {line}", "suffix")
        for bins in boxes:
            box = decode_box(bins, width, height)
            if box[2] <= box[0] or box[3] <= box[1]:
                raise AnnotationError(path, f"line {line}", "suffix", f"box {bins} of '{text}' has zero or negative area")
            parsed.append((text, bins, box))
    return parsed


def _merge(path: Path, tasks: dict[str, tuple[int, str, str]], width: int, height: int) -> tuple[list[DefectObject], str | None]:
    """Objects and caption from one image's task records.

    A bad record rejects the whole image: a partly labelled image would teach that its defects
    are absent.
    """
    parsed = {task: _parse(path, line, suffix, width, height) for task, (line, _prefix, suffix) in tasks.items()}
    caption = None
    if "grounding" in tasks:
        line, prefix, _suffix = tasks["grounding"]
        caption_text = prefix[len(TASK_PROMPTS["grounding"]) :].strip()
        caption = check_text(caption_text, path, f"line {line}", "prefix") if caption_text else None
    base_task = next((t for t in ("od", "dense", "grounding") if t in parsed), None)
    if base_task is None:
        return [], caption
    objects = [DefectObject(label=text, box=box) for text, _bins, box in parsed[base_task]]
    if base_task == "od" and "dense" in parsed:
        unused = list(range(len(objects)))
        bins_of = [bins for _t, bins, _b in parsed["od"]]
        for text, bins, _box in parsed["dense"]:
            match = next((i for i in unused if bins_of[i] == bins), None)
            if match is not None:
                unused.remove(match)
                objects[match] = replace(objects[match], description=text)
    return objects, caption


def read_task_records(path: Path) -> list[TaskRecord]:
    """The records of one annotations.jsonl in file order (for a dataset this project built)."""
    with path.open(encoding="utf-8") as handle:
        return [TaskRecord(r["image"], r["prefix"], r["suffix"]) for r in map(json.loads, filter(str.strip, handle))]


def import_florence_jsonl(root: Path, collector: ImportCollector, split: str | None = None) -> ImportResult:
    """Import every split, or only ``split`` (so a training loader does not probe the other splits' images)."""
    if collector.root is None:
        collector.root = root
    files = [f for f in annotation_files(root) if split is None or f.parent.name == split]
    if not files:
        raise AnnotationError(root, "dataset root", ANNOTATIONS_FILE, "no annotations.jsonl at the root or in train/valid/test")
    for path in files:
        split = normalise_split(path.parent.name) if path.parent != root else None
        try:
            collector.inside(path, path, "file", ANNOTATIONS_FILE)
        except AnnotationError as error:
            collector.reject(error)
            continue
        by_image = _read_lines(path, collector)
        collector.prefetch(p for r in by_image if (p := try_resolve(path.parent, r)) is not None)
        for reference, tasks in by_image.items():
            first_line = min(line for line, _p, _s in tasks.values())

            def build(
                reference: str = reference, tasks: dict = tasks, first_line: int = first_line, path: Path = path, split: str | None = split
            ) -> AnnotatedImage:
                where = f"line {first_line}"
                image_path = resolve_image(path.parent, reference, path, where, "image")
                info = collector.image_info(image_path, path, where)
                objects, caption = _merge(path, tasks, info.width, info.height)
                if objects and collector.class_map is not None:  # the labels come from the first of od, dense, grounding
                    line = f"line {next(tasks[t][0] for t in ('od', 'dense', 'grounding') if t in tasks)}"
                    objects = [replace(o, label=collector.class_name(o.label, path, line, "suffix")) for o in objects]
                return AnnotatedImage(
                    image_path=image_path,
                    width=info.width,
                    height=info.height,
                    objects=tuple(objects),
                    caption=caption,
                    split=split,
                    source_key=source_key_for(image_path),
                    sha256=info.sha256,
                )

            collector.attempt(build)
    return collector.finish("jsonl", root)
