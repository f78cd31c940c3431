"""Scored frames as a Label Studio import: tasks with the model's boxes as ``predictions`` (pre-labels).

For plants that label in Label Studio instead of the review page. The folder holds ``tasks.json`` (the
Basic Label Studio JSON format, https://labelstud.io/guide/predictions), ``label_config.xml`` (a labelling
interface with the classes: RectangleLabels ``label`` over Image ``image``) and ``images/`` (hard links
or copies). Each task is one image; each model version that scored it is one prediction (``model_version``,
``score``: the least confident of its boxes, so sorting by prediction score puts the doubtful frames first),
each box one ``rectanglelabels`` result in percent of the image with its (calibrated) confidence as
``score``. An image already reviewed completely carries the reviewed boxes as an ``annotation`` too.

Images are referenced as ``<url_prefix>images/<name>``; the default prefix is Label Studio's local file
serving (start it with ``LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT=<this folder>``), or
pass the URL the folder is served at.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lxml import etree

from inspect_core.data.annotations import Box
from inspect_core.data.build_output import atomic_directory
from inspect_core.data.exporters.frames import ExportFrame, latest_per_image
from inspect_core.data.exporters.images import ExportResult, clip, export_name, image_problem, label_problem, place_image

TASKS_FILE = "tasks.json"
CONFIG_FILE = "label_config.xml"
IMAGES_FOLDER = "images"
LOCAL_FILES = "/data/local-files/?d="
FROM_NAME, TO_NAME = "label", "image"


def region(box: Box, width: int, height: int, label: str, result_id: str, score: float | None = None) -> dict[str, Any]:
    """One ``rectanglelabels`` result: the pixel box as percent of the image, as Label Studio stores regions."""
    x1, y1, x2, y2 = box
    value = {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width, "height": 100 * (y2 - y1) / height,
             "rotation": 0, "rectanglelabels": [label]}  # fmt: skip
    result = {"id": result_id, "type": "rectanglelabels", "from_name": FROM_NAME, "to_name": TO_NAME, "original_width": width,
              "original_height": height, "image_rotation": 0, "value": value}  # fmt: skip
    return result | ({"score": score} if score is not None else {})


def task(frames: list[ExportFrame], image_url: str) -> dict[str, Any]:
    """The task of one image: a prediction per model version that scored it, the latest complete review as an annotation."""
    first = frames[0]
    data = {"image": image_url, "inspect_image_id": first.image_id, "captured_at": first.captured_at.isoformat(),
            "camera": first.camera, "line": first.line}  # fmt: skip
    predictions = []
    for frame in frames:
        results = [region(b, frame.width, frame.height, p.label, f"m{frame.model_version_id}-d{p.detection_id}", p.score)
                   for p in frame.predictions if (b := clip(p.box, frame.width, frame.height)) is not None]  # fmt: skip
        if results:
            predictions.append({"model_version": frame.model, "score": min(r["score"] for r in results), "result": results})
    entry: dict[str, Any] = {"data": data}
    if predictions:
        entry["predictions"] = predictions
    reviewed = latest_per_image(f for f in frames if f.status == "complete")
    if reviewed:
        frame = reviewed[0]
        results = [region(c, frame.width, frame.height, b.label, f"r{frame.model_version_id}-{i}")
                   for i, b in enumerate(frame.boxes) if (c := clip(b.box, frame.width, frame.height)) is not None]  # fmt: skip
        entry["annotations"] = [{"result": results, "ground_truth": False}]
    return entry


def label_config(classes: Iterable[str]) -> bytes:
    """A labelling interface for these classes (Label Studio's object detection template)."""
    view = etree.Element("View")
    etree.SubElement(view, "Image", name=TO_NAME, value="$image", zoom="true")
    labels = etree.SubElement(view, "RectangleLabels", name=FROM_NAME, toName=TO_NAME)
    for name in sorted(set(classes)):
        etree.SubElement(labels, "Label", value=name)
    etree.indent(view, space="  ")
    return etree.tostring(view, pretty_print=True, encoding="utf-8")


def write_label_studio(frames: Iterable[ExportFrame], out: Path, overwrite: bool = False, link: bool = True,
                       url_prefix: str = LOCAL_FILES) -> ExportResult:  # fmt: skip
    """Write the Label Studio import of ``frames`` at ``out`` (one task per image); images that cannot be used are skipped
    with the reason. Nothing to write leaves ``out`` untouched. ``out`` existing needs ``overwrite``."""
    result = ExportResult(out=None, format="label-studio")
    per_image: dict[int, list[ExportFrame]] = defaultdict(list)
    for frame in frames:
        per_image[frame.image_id].append(frame)
    planned = []
    for image_frames in per_image.values():
        first = image_frames[0]
        labels = [p.label for f in image_frames for p in f.predictions] + [b.label for f in image_frames for b in f.boxes]
        problem = image_problem(first) or label_problem(labels)
        if problem is not None:
            result.skipped.append((first.image_path, problem))
            continue
        planned.append((sorted(image_frames, key=lambda f: f.model_version_id), export_name(first)))
    if not planned:
        return result
    tasks, classes, boxes = [], set(), Counter()
    with atomic_directory(Path(out), overwrite) as staging:
        (staging / IMAGES_FOLDER).mkdir()
        for image_frames, name in sorted(planned, key=lambda p: (p[0][0].captured_at, p[0][0].image_id)):
            linked = place_image(Path(image_frames[0].image_path), staging / IMAGES_FOLDER / name, link)
            result.linked += linked
            result.copied += not linked
            entry = task(image_frames, f"{url_prefix}{quote(f'{IMAGES_FOLDER}/{name}')}")
            tasks.append(entry)
            for prediction in entry.get("predictions", []):
                for r in prediction["result"]:
                    classes.update(r["value"]["rectanglelabels"])
                    boxes.update(r["value"]["rectanglelabels"])
            for annotation in entry.get("annotations", []):
                classes.update(label for r in annotation["result"] for label in r["value"]["rectanglelabels"])
                result.clean_frames += not annotation["result"]
        (staging / TASKS_FILE).write_text(json.dumps(tasks, indent=1, ensure_ascii=False), encoding="utf-8")
        (staging / CONFIG_FILE).write_bytes(label_config(classes))
    result.out, result.frames, result.boxes = Path(out), len(tasks), dict(sorted(boxes.items()))
    return result
