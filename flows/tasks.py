"""Small typed Prefect tasks over :mod:`inspect_core`, and the per-process caches that make scale-out cheap.

Tasks take and return plain values (paths as text, store URLs, pydantic settings, dataclasses), so
they travel to Dask worker processes. Each process opens a store once and loads a model once
(module-level caches): a Dask worker scoring twenty shards loads the model once, not twenty times.
The store retries its own calls (one policy, ``inspect_core.store.engine``): tasks that only call the
store add no Prefect retries on top, or one call would be tried retries x attempts times. Only the
folder step retries, and only for a file-system error (a dropped network share); training does not
(a retry would fail the same way, for an hour).
Caching is off everywhere: every task reads state (the store, a folder) that changes between calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from inspect_core.config import InspectConfig, ScoreSection
from inspect_core.data.dataset_builder import BuildSummary
from inspect_core.data.sources import import_and_build
from inspect_core.errors import EnvironmentFailure
from inspect_core.inference.scoring import Detector, ScoreSummary, load_detector, register_model_dir, score_images
from inspect_core.ingest.camera import CameraCapture, CaptureReport, parse_source, shown_source
from inspect_core.ingest.folder import FolderWatcher, IngestReport
from inspect_core.model.trained_model import resolve_trained_source
from inspect_core.reporting import plot_report
from inspect_core.store import (
    Engine,
    ReportFilter,
    champion,
    class_summary,
    defect_rate_per_line,
    defects_per_day,
    model_version,
    open_store,
    unscored_images,
)
from inspect_core.training.retraining import RetrainResult, retrain

FOLDER_RETRIES = 3
FOLDER_RETRY_DELAYS = [2, 10, 30]
CHAMPION = "champion"
FALLBACK_MODEL = "tiny"  # what scores while no retrain has promoted a champion yet
MODELS_PER_PROCESS = 2  # a worker keeps the models it used last: a nightly promotion must not pile up old models

_engines_lock = threading.Lock()
_models_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_detectors: OrderedDict[tuple[str, str, str], Detector] = OrderedDict()
model_loads: Counter[tuple[str, str, str]] = Counter()  # (model dir, backend, precision) -> loads in this process


def store(url: str) -> Engine:
    """This process's engine for ``url``, opened (and its schema migrated) on first use."""
    with _engines_lock:
        if url not in _engines:
            _engines[url] = open_store(url)
        return _engines[url]


def cached_detector(model_dir: str, backend: str, precision: str, image_size: int | None = None, decoder: str = "lean") -> Detector:
    """This process's detector for ``model_dir`` at ``image_size``: loaded on a worker's first shard, reused by the rest."""
    key = (model_dir, backend, precision, image_size, decoder)
    with _models_lock:
        if key not in _detectors:
            _detectors[key] = load_detector(model_dir, backend, precision, image_size, decoder)
            model_loads[key] += 1
            while len(_detectors) > MODELS_PER_PROCESS:
                _detectors.popitem(last=False)
        _detectors.move_to_end(key)
        return _detectors[key]


def model_load_count(model_dir: str, backend: str, precision: str, image_size: int | None = None, decoder: str = "lean") -> int:
    """Loads of this model in this process so far (1 on a worker that reused it for every shard).

    Prefect ships a task's function to Dask workers by value, with a copy of this module's globals:
    task bodies must reach the per-process caches through module functions like this one.
    """
    return model_loads[(model_dir, backend, precision, image_size, decoder)]


def only_file_system_errors(_task: object, _task_run: object, state: State) -> bool:
    """Prefect retry condition: retry a folder step that failed on the file system (a share dropped, a mount gone).

    A ``StoreUnavailableError`` already went through the store's own retries; trying it again here
    would multiply them. Other errors are bugs or bad input and fail the same way again.
    """
    return isinstance(state.data, OSError)


def shard(paths: list[str], size: int) -> list[list[str]]:
    """Consecutive slices of at most ``size`` paths (oldest capture first stays first)."""
    if size < 1:
        raise ValueError("shard size must be >= 1")
    return [paths[start : start + size] for start in range(0, len(paths), size)]


# ---------------------------------------------------------------------------------------------
# Ingest


@dataclass
class IngestCounts:
    """What an ingest run did, in counts (a watch may see thousands of files) and quarantine reasons."""

    registered: int = 0
    duplicates: int = 0
    quarantined: int = 0
    waiting: int = 0  # still settling after the last poll
    polls: int = 0
    failed_polls: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, report: IngestReport) -> None:
        self.registered += len(report.registered)
        self.duplicates += len(report.duplicates)
        self.quarantined += len(report.quarantined)
        self.waiting = len(report.waiting)
        for reason in report.quarantined.values():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + 1


@task(cache_policy=NO_CACHE, retries=FOLDER_RETRIES, retry_delay_seconds=FOLDER_RETRY_DELAYS, retry_condition_fn=only_file_system_errors)
def ingest_folder(
    folder: str, store_url: str, camera: str, line: str, settle_seconds: float, poll_seconds: float, watch_seconds: float = 0.0,
    recursive: bool = True, archive_dir: str | None = None,
) -> IngestCounts:  # fmt: skip
    """Register the folder's settled images; with ``watch_seconds`` > 0 keep polling that long (continuous ingest)."""
    logger = get_run_logger()
    archive = Path(archive_dir) if archive_dir else None
    watcher = FolderWatcher(Path(folder), store(store_url), camera, line, settle_seconds, recursive, archive)
    counts = IngestCounts()

    def on_poll(report: IngestReport) -> None:
        counts.add(report)
        if report.registered or report.duplicates or report.quarantined:
            logger.info("%s: %s", folder, report.summary())

    if watch_seconds > 0:
        deadline = time.monotonic() + watch_seconds
        totals = watcher.watch(poll_seconds, stop=lambda: time.monotonic() >= deadline, on_poll=on_poll)
        counts.polls, counts.failed_polls = totals.polls, totals.failed_polls
    else:
        on_poll(watcher.catch_up(poll_seconds))
        counts.polls = 1
    return counts


@task(cache_policy=NO_CACHE)
def capture_frames(
    source: str, out_dir: str, camera: str, line: str, max_frames: int, every_seconds: float | None, max_reconnects: int
) -> CaptureReport:
    """Sample good frames from a camera, stream or video file into ``out_dir`` (retries are the capture's own reconnects)."""
    capture = CameraCapture(parse_source(source), Path(out_dir), camera, line, every_seconds=every_seconds, max_reconnects=max_reconnects)
    report = capture.run(max_frames=max_frames)
    get_run_logger().info("camera %s: %d frame(s) written, %s", camera, report.written, report.end_reason)
    if report.failed:  # as `inspect-core ingest camera` exits non-zero: a camera that is gone fails the run, visibly
        raise EnvironmentFailure(f"camera {camera} ({shown_source(capture.source)}): {report.end_reason}; {report.written} frame(s) kept")
    return report


# ---------------------------------------------------------------------------------------------
# Dataset and training


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def build_dataset_task(config: InspectConfig, source: str, output: str, overwrite: bool) -> BuildSummary:
    """Import labels from ``source`` (any supported format) and write the Florence JSONL dataset to ``output``."""
    summary = import_and_build(Path(source), Path(output), config.dataset, config.augment, overwrite=overwrite)
    images = sum(s.images for s in summary.splits.values())
    get_run_logger().info("built %s: %d image(s), classes %s", output, images, ", ".join(summary.classes))
    return summary


@task(cache_policy=NO_CACHE)
def retrain_task(
    config: InspectConfig, labelled: str, store_url: str, work_dir: str, validation: str, margin: float, export: bool
) -> RetrainResult:
    """Champion/challenger retraining: promotes the challenger only if it beats the champion by ``margin``."""
    result = retrain(config, Path(labelled), store(store_url), Path(work_dir), Path(validation), margin=margin, export=export)
    get_run_logger().info("retrain: %s", result.reason)
    return result


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class ModelChoice:
    """The model a scoring run uses, as the registry knows it."""

    path: str
    version_id: int
    name: str
    metrics: dict


@dataclass(frozen=True)
class ShardResult:
    summary: ScoreSummary
    worker_pid: int
    model_loads: int  # loads of this model in that worker process so far: 1 means it was loaded once


@task(cache_policy=NO_CACHE)
def pick_model(store_url: str, model: str, image_size: int | None = None) -> ModelChoice:
    """``champion``: the promoted model, or the shipped tiny one until a retrain promotes one; else ``model`` as given."""
    engine = store(store_url)
    best = champion(engine) if model == CHAMPION else None
    if best is not None:
        return ModelChoice(best.path, int(best.id), best.name, dict(best.metrics))
    version_id, _ = register_model_dir(engine, resolve_trained_source(FALLBACK_MODEL if model == CHAMPION else model), image_size)
    version = model_version(engine, version_id)
    return ModelChoice(version.path, version_id, version.name, dict(version.metrics))


@task(cache_policy=NO_CACHE)
def list_unscored(store_url: str, model_version_id: int, limit: int | None) -> list[str]:
    """Paths of registered images this model version has not scored yet, oldest capture first."""
    return [record.path for record in unscored_images(store(store_url), model_version_id, limit)]


@task(cache_policy=NO_CACHE)
def score_shard(paths: list[str], model_dir: str, store_url: str, settings: ScoreSection, image_size: int | None = None) -> ShardResult:
    """Score one shard with this worker's cached model.

    The paths are registered images: each keeps the line of its registered row (the store copies it
    into its scores and detections). No Prefect retries: the store retries its own calls, unreadable
    files are quarantined, and a shard run again later skips what an earlier attempt stored.
    """
    logger = get_run_logger()
    detector = cached_detector(model_dir, settings.backend, settings.precision, image_size, settings.decoder)
    summary = score_images([Path(p) for p in paths], model_dir, store(store_url), settings, detector=detector, image_size=image_size)
    logger.info("scored %d, skipped %d, quarantined %d: %d defect(s) in %.1f s (pid %d)", summary.scored, summary.skipped,
                summary.quarantined, summary.detections, summary.seconds, os.getpid())  # fmt: skip
    return ShardResult(
        summary, os.getpid(), model_load_count(model_dir, settings.backend, settings.precision, image_size, settings.decoder)
    )


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass
class ReportTables:
    per_class: pd.DataFrame  # class_name, detections, mean_confidence, max_confidence
    per_day: pd.DataFrame  # day x class
    per_line: pd.DataFrame  # line, images_scored, images_with_defects, defect_rate
    champion: ModelChoice | None


@task(cache_policy=NO_CACHE)
def report_tables(store_url: str, flt: ReportFilter) -> ReportTables:
    """The report's aggregates (computed in SQL) and the champion it is read against."""
    engine = store(store_url)
    best = champion(engine)
    chosen = ModelChoice(best.path, int(best.id), best.name, dict(best.metrics)) if best is not None else None
    return ReportTables(class_summary(engine, flt), defects_per_day(engine, flt), defect_rate_per_line(engine, flt), chosen)


@task(cache_policy=NO_CACHE)
def plot_report_task(store_url: str, flt: ReportFilter, out_dir: str) -> list[str]:
    """Defects per day, defect rate per line and the confidence histogram as PNGs in ``out_dir``."""
    return [str(path) for path in plot_report(store(store_url), flt, Path(out_dir))]
