"""Batch scoring: images in, defects with class, box and confidence out, into the results store.

What makes it faster than scoring one image at a time with beam search and an unmerged adapter:
worker processes read, hash, decode and resize the next batch while the model runs; the adapter is
merged into the weights once; generation is batched greedy decoding with the KV cache. Images this
model version already scored are skipped before the model sees them, and each batch is stored in one
transaction, so a run killed at any moment and started again scores every image exactly once.
Unreadable, empty, truncated, non-image and oversized files (over the decode budget, from the header) and files
whose name is not UTF-8 are quarantined, once per file however often rerun; the batch goes on. Image-reading
workers die with the scorer (kill -9 included), so a killed run leaves nothing behind to finish.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from inspect_core.config import ScoreSection
from inspect_core.data.importers.image_files import name_problem, read_image, shown_path
from inspect_core.data.worker_lifetime import die_with_parent
from inspect_core.inference.detector import Detection, detect
from inspect_core.inference.onnx_backend import MANIFEST as ONNX_MANIFEST
from inspect_core.inference.onnx_backend import OnnxFlorence
from inspect_core.inference.poses import with_poses
from inspect_core.inference.thresholds import detection_policy
from inspect_core.inference.tiling import TilePlan, place_detections, plan_tiles, window_crops
from inspect_core.model.calibration import load_calibration, model_vocabulary
from inspect_core.model.lora import merge_adapter
from inspect_core.model.precision import use_bf16
from inspect_core.model.trained_model import MODEL_INFO, load_trained, resolve_trained_source, saved_input_size
from inspect_core.store import (
    Engine,
    ScoredImage,
    StoredDetection,
    add_skipped,
    already_scored,
    finish_run,
    quarantine,
    register_model,
    start_run,
    store_scored_batch,
)


class Detector(Protocol):
    """A backend: square RGB crops at the model's input size in, detections in crop pixels out."""

    input_size: int

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]: ...


def scoring_dtype(precision: str, device: torch.device) -> torch.dtype:
    return torch.bfloat16 if use_bf16(precision, device) else torch.float32


class TorchDetector:
    """The PyTorch backend: a merged model (adapters folded into the weights once, at load), on the GPU if there is one."""

    def __init__(self, model_dir: str, precision: str, image_size: int | None = None, decoder: str = "lean") -> None:
        model, self.processor = load_trained(model_dir, image_size)
        model = merge_adapter(model) if hasattr(model, "merge_and_unload") else model
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device=device, dtype=scoring_dtype(precision, device)).eval()
        self.input_size = int(self.processor.image_processor.size["height"])
        self.decoder = decoder

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        return detect(self.model, self.processor, crops, "<OD>", max_new_tokens=max_new_tokens, num_beams=num_beams,
                      decoder=self.decoder)  # fmt: skip


def load_detector(model_dir: str, backend: str, precision: str, image_size: int | None = None, decoder: str = "lean") -> Detector:
    """The backend at the recipe's ``model.image_size`` (None: the size the model was saved or exported with); ``decoder``
    is ``score.decoder`` (the torch backend's greedy loop: ``lean`` or transformers' ``generate``, the same answers)."""
    if backend == "onnx":
        detector = OnnxFlorence(Path(model_dir))
        if image_size is not None and image_size != detector.input_size:
            raise ValueError(
                f"model.image_size {image_size}: the ONNX export in {model_dir} takes {detector.input_size} px images; "
                f"export again with that model.image_size, or drop it from the recipe"
            )
        return detector
    return TorchDetector(model_dir, precision, image_size, decoder)


@dataclass(slots=True)
class LoadedFrame:
    """One image as a worker prepared it: windows (one, or tiles off the blank margins) resized to the model input."""

    path: str
    captured_at: datetime
    sha256: str = ""
    width: int = 0
    height: int = 0
    plan: TilePlan | None = None
    crops: list[np.ndarray] = field(default_factory=list)
    error: str | None = None


class FrameDataset(Dataset):
    """Reads, hashes, decodes, tiles and resizes images; runs inside DataLoader worker processes."""

    def __init__(self, paths: Sequence[Path], input_size: int, settings: ScoreSection) -> None:
        self.paths, self.input_size, self.settings = list(paths), input_size, settings

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> LoadedFrame:
        path = self.paths[index]
        if unusable := name_problem(path):  # the path policy of every file walk: see image_files.name_problem
            return LoadedFrame(shown_path(path), datetime.now(timezone.utc), error=unusable)
        try:
            captured_at = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        except OSError as exc:
            return LoadedFrame(str(path), datetime.now(timezone.utc), error=f"cannot read image {path.name}: {exc}")
        loaded = read_image(path)
        if isinstance(loaded, str):
            return LoadedFrame(str(path), captured_at, error=loaded)
        pixels, sha256 = loaded
        plan = plan_tiles(pixels, self.settings, self.settings.tile)  # predict's path too (inference.tiling)
        crops = window_crops(pixels, plan.windows, self.input_size)
        return LoadedFrame(str(path), captured_at, sha256, plan.width, plan.height, plan, crops)


@dataclass
class ScoreSummary:
    run_id: int
    model_version: str
    images: int
    scored: int
    skipped: int
    quarantined: int
    detections: int
    per_class: dict[str, int]  # operating detections (defects) per class
    seconds: float
    quarantined_files: dict[str, str] = field(default_factory=dict)  # path (as shown) -> reason, this run's
    stored: int = 0  # detections stored, down to the storage floor (``detections`` counts the operating ones)
    thresholds: dict = field(default_factory=dict)  # the operating thresholds the run applied
    dropped_labels: dict[str, int] = field(default_factory=dict)  # answers outside the model's vocabulary, never stored
    rescored: bool = False

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 3)}


def settings_hash(settings: ScoreSection) -> str:
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


def register_model_dir(engine: Engine, model_dir: str, image_size: int | None = None) -> tuple[int, str]:
    """The registry id and name of the model in ``model_dir`` (a checkpoint's base and adapter recorded;
    for an ONNX export, the model it was exported from), with the input size it scores at in its metrics."""
    info_file, onnx_file = Path(model_dir) / MODEL_INFO, Path(model_dir) / ONNX_MANIFEST
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    if onnx_file.is_file():
        info = {"base_model": json.loads(onnx_file.read_text()).get("source", {}).get("model", model_dir)}
    base = info.get("base_model", model_dir)
    adapter = model_dir if info.get("kind") == "adapter" else None
    saved = saved_input_size(model_dir)
    image_size = image_size or saved  # who registers first (scoring, a flow's model pick) records the same
    metrics = {"image_size": image_size} if image_size is not None else {}
    calibration = load_calibration(model_dir)
    if calibration is not None:  # recorded with the version: the thresholds and the fit behind its confidences
        metrics["calibration"] = {"thresholds": calibration.thresholds, "default_threshold": calibration.default_threshold,
                                  "fitted": calibration.fitted}  # fmt: skip
    if (vocabulary := model_vocabulary(model_dir)) is not None:
        metrics["classes"] = list(vocabulary)
    # Another input size gives other answers: a version of its own (the saved size keeps the plain weights' identity).
    variant = f"image_size={image_size}" if image_size is not None and saved is not None and image_size != saved else None
    version = register_model(engine, Path(model_dir), base_model=base, adapter=adapter, metrics=metrics, variant=variant)
    return int(version.id), version.name


def score_images(
    paths: Sequence[Path], model: str, engine: Engine, settings: ScoreSection, source_id: int | None = None,
    progress: Callable[[int], None] | None = None, detector: Detector | None = None, image_size: int | None = None,
    rescore: bool = False,
) -> ScoreSummary:  # fmt: skip
    """Score ``paths`` with ``model`` (``tiny``, a model or checkpoint folder) into the store ``engine``.

    ``image_size`` is the recipe's ``model.image_size``: the side crops are resized to (None: the
    size the model was saved with); it is recorded with the model version.

    Every detection down to the storage floor is stored, calibrated when the model folder has a
    ``calibration.json``, and marked operating when it reaches its class's operating threshold
    (``inspect_core.inference.thresholds``); labels outside the model's vocabulary are dropped and
    counted. ``rescore`` scores images this model version already scored again, as a new run that
    keeps the earlier answers as history (``inspect_core.store.history``).

    ``progress`` is called with the number of images finished after each batch. A failure marks
    the run failed (what was stored stays stored and is skipped next time) and re-raises.
    """
    # The onnx backend reads an export folder (``inspect-core export onnx``) as it is.
    paths = [Path(p).resolve() for p in paths]
    model_dir = model if settings.backend == "onnx" else resolve_trained_source(model)
    detector = detector or load_detector(model_dir, settings.backend, settings.precision, image_size, settings.decoder)
    detector = with_poses(detector, settings.tta_poses)
    version_id, version_name = register_model_dir(engine, model_dir, detector.input_size)
    policy = detection_policy(model_dir, settings)
    started = time.perf_counter()  # throughput counts scoring, not the one-off model load
    run_id = start_run(engine, version_id, settings_hash(settings), len(paths), thresholds=policy.thresholds.as_dict())
    dropped: Counter[str] = Counter()
    loader = DataLoader(
        FrameDataset(paths, detector.input_size, settings), batch_size=settings.batch_size, num_workers=settings.num_workers,
        collate_fn=list, prefetch_factor=2 if settings.num_workers else None,
        worker_init_fn=functools.partial(_bind_worker, os.getpid()) if settings.num_workers else None,
    )  # fmt: skip
    per_class: Counter[str] = Counter()
    counts = Counter()
    quarantined: dict[str, str] = {}
    try:
        for frames in loader:
            for frame in frames:
                if frame.error:
                    quarantine(engine, frame.path, frame.error, stage="score", run_id=run_id)  # one row per file, however many reruns
                    quarantined[frame.path] = frame.error
            good = [f for f in frames if not f.error]
            done = set() if rescore else already_scored(engine, version_id, [f.sha256 for f in good])
            todo = [f for f in good if f.sha256 not in done]
            if len(good) > len(todo):
                add_skipped(engine, run_id, len(good) - len(todo))
            crops = [crop for f in todo for crop in f.crops]
            found: list[list[Detection]] = []
            with torch.inference_mode():
                for start in range(0, len(crops), settings.batch_size):
                    found.extend(detector(crops[start : start + settings.batch_size], settings.max_new_tokens, settings.num_beams))
            scored: list[ScoredImage] = []
            for frame in todo:
                mine, found = found[: len(frame.plan.windows)], found[len(frame.plan.windows) :]
                kept, outside = policy.judge(place_detections(frame.plan, mine, detector.input_size, settings.tile_merge_overlap))
                dropped.update(outside)
                stored = [StoredDetection(d.label, d.score, d.box, operating=operating) for d, operating in kept]
                scored.append(ScoredImage(frame.sha256, frame.path, frame.width, frame.height, frame.captured_at, source_id, stored))
            written = store_scored_batch(engine, run_id, version_id, scored, rescore=rescore)
            per_class.update(
                d.class_name
                for sha, image in {i.sha256: i for i in scored}.items()
                if sha in written
                for d in image.detections
                if d.operating
            )
            lost = len(todo) - len(written)  # taken meanwhile by another scorer of the same images (or a copy in this batch)
            if lost:
                add_skipped(engine, run_id, lost)
            counts.update(quarantined=len(frames) - len(good), skipped=len(good) - len(todo) + lost)
            if progress:
                progress(len(frames))
    except BaseException as error:
        try:
            finish_run(engine, run_id, "failed", error=f"{type(error).__name__}: {error}")
        except Exception as unrecorded:  # the store is what failed (down, read-only): the next start reaps the run
            error.add_note(f"the run could not be marked failed either: {unrecorded}")
        raise
    record = finish_run(engine, run_id, "completed", dropped_labels=dict(dropped))
    return ScoreSummary(
        run_id=run_id, model_version=version_name, images=len(paths), scored=record.images_scored, skipped=counts["skipped"],
        quarantined=counts["quarantined"], detections=record.defects, per_class=dict(sorted(per_class.items())),
        seconds=time.perf_counter() - started, quarantined_files=quarantined, stored=record.detections,
        thresholds=policy.thresholds.as_dict(), dropped_labels=dict(sorted(dropped.items())), rescored=rescore,
    )  # fmt: skip


def _bind_worker(parent_pid: int, _worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the image-reading worker dies with the scorer (kill -9 included).

    A worker blocked handing a batch to a parent that was killed never reaches torch's own parent
    check, and lived on for minutes; the kernel's parent-death signal ends it at once.
    """
    die_with_parent(parent_pid)
