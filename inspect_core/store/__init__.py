"""The results store, behind one boundary: schema, engine, migrations, the retry policy and every query.

Nothing outside this package opens a session or builds SQL (tests/store/test_boundary.py checks it):
callers use these functions, each one transaction retried the same way while the database is down
(``engine.with_retries``), and add no retries of their own.

- ``schema``: the tables, and the values callers hand in (``ScoredImage``, ``StoredDetection``)
- ``engine``: URLs, engines, ``with_retries``, ``StoreUnavailableError``
- ``opening``: ``open_store``: file checks, migrations in one locked transaction, finishing a half-built schema
- ``runs``: scoring runs started, heartbeat, finished, and reaped when their process is gone
- ``writes``: sources, model registry, scored batches, quarantine (one row per file)
- ``history``: rescoring moves the detections it replaces to ``superseded_detections``
- ``queries``: the reads that drive work (champion, unscored images, known hashes)
- ``reports``: the report queries, as DataFrames (rendering them is ``inspect_core.reporting``)
"""

from sqlalchemy.engine import Engine

from inspect_core.store.engine import StoreUnavailableError, create_store_engine, with_retries
from inspect_core.store.opening import MIGRATIONS_DIR, downgrade, migrate, open_store
from inspect_core.store.queries import already_scored, champion, known_hashes, model_version, unscored_images
from inspect_core.store.reports import (
    ReportFilter,
    class_summary,
    confidence_histogram,
    defect_rate_per_line,
    defects_per_day,
    detections_frame,
    top_image_boxes,
)
from inspect_core.store.runs import STALE_AFTER, add_skipped, finish_run, reap_stale_runs, start_run
from inspect_core.store.schema import (
    DetectionDayCount,
    DetectionRecord,
    ImageRecord,
    ImageScore,
    ModelVersion,
    QuarantineEntry,
    ScoredImage,
    ScoringRun,
    Source,
    StoredDetection,
    SupersededDetection,
)
from inspect_core.store.writes import (
    ensure_source,
    promote_model,
    quarantine,
    quarantine_once,
    register_frames,
    register_model,
    store_scored_batch,
    weights_fingerprint,
    write_scored_batch,
)

__all__ = [
    "MIGRATIONS_DIR",
    "STALE_AFTER",
    "DetectionDayCount",
    "DetectionRecord",
    "Engine",
    "ImageRecord",
    "ImageScore",
    "ModelVersion",
    "QuarantineEntry",
    "ReportFilter",
    "ScoredImage",
    "ScoringRun",
    "Source",
    "StoreUnavailableError",
    "StoredDetection",
    "SupersededDetection",
    "add_skipped",
    "already_scored",
    "champion",
    "class_summary",
    "confidence_histogram",
    "create_store_engine",
    "defect_rate_per_line",
    "defects_per_day",
    "detections_frame",
    "downgrade",
    "ensure_source",
    "finish_run",
    "known_hashes",
    "migrate",
    "model_version",
    "open_store",
    "promote_model",
    "quarantine",
    "quarantine_once",
    "reap_stale_runs",
    "register_frames",
    "register_model",
    "start_run",
    "store_scored_batch",
    "top_image_boxes",
    "unscored_images",
    "weights_fingerprint",
    "with_retries",
    "write_scored_batch",
]
