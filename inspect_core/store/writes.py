"""Writes to the results store: sources, the model registry, scoring runs, scored batches, quarantine.

Each public function is one transaction under the store's retry policy (``engine.with_retries``).

Exactly-once scoring: an image's detections and its ``image_scores`` row (unique per image and model
version) are written in one transaction. A scorer killed mid-batch loses only that uncommitted batch;
started again it skips what is already scored, so every image ends up scored exactly once.
Two scorers given the same images at once (two workers on one Prefect pool) both find them unscored;
the ``image_scores`` insert is the claim (ON CONFLICT DO NOTHING), and only the scorer whose insert
took an image's row writes its detections, so the race ends in one row per image, not an IntegrityError.

Line follows image: the capture time and source copied into ``image_scores``, ``detections`` and the
day counts are read from the image's registered row in that same transaction, never taken from the
caller. A frame folder ingest registered on line L2 is counted on L2 whoever scores it (a Prefect
shard, a Dask worker, the CLI), and stays there after its camera moves to L3.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date, datetime, timezone
from functools import lru_cache
from operator import itemgetter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from inspect_core.errors import UsageError
from inspect_core.store.engine import with_retries
from inspect_core.store.history import supersede
from inspect_core.store.runs import heartbeat
from inspect_core.store.schema import (
    NO_SOURCE,
    DetectionDayCount,
    DetectionRecord,
    ImageRecord,
    ImageScore,
    ModelVersion,
    QuarantineEntry,
    ScoredImage,
    Source,
    StoredDetection,
    confidence_bin,
    utc_now,
)


def _insert_ignoring_duplicates(dialect_name: str, table: sa.Table) -> Any:
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()


# ---------------------------------------------------------------------------------------------
# Sources and models


def ensure_source(engine: Engine, camera: str, line: str) -> int:
    """The id of camera ``camera`` over line ``line``, created on first use.

    A camera seen on another line before gets a new source: the frames it captured there keep
    their own source, hence their line, in every report.
    """
    if not camera or not line:
        raise UsageError(f"a source needs a camera and a line: got camera {camera!r}, line {line!r}")
    table = Source.__table__

    def run() -> int:
        with engine.begin() as connection:
            connection.execute(_insert_ignoring_duplicates(engine.dialect.name, table), {"camera": camera, "line": line})
            return int(connection.execute(sa.select(table.c.id).where(table.c.camera == camera, table.c.line == line)).scalar_one())

    return with_retries(run, f"registering camera {camera!r} on line {line!r}")


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over a model folder's weight and config files: same files, same model version."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".json", ".onnx"}:
            digest.update(path.relative_to(model_dir).as_posix().encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def register_model(
    engine: Engine, model_dir: Path, base_model: str, adapter: str | None = None, metrics: dict[str, Any] | None = None,
    name: str | None = None, variant: str | None = None,
) -> ModelVersion:  # fmt: skip
    """The registry entry for the model in ``model_dir``, created the first time its weights are seen.

    ``variant`` names a way of running the same weights that changes their answers (``image_size=512``
    for a model saved at 256): it is part of the version's identity, so images scored at one input
    size are not taken as scored at another.
    """
    fingerprint = weights_fingerprint(model_dir)
    if variant:
        fingerprint = hashlib.sha256(f"{fingerprint}:{variant}".encode()).hexdigest()

    def run() -> ModelVersion:
        with Session(engine, expire_on_commit=False) as session:
            known = select(ModelVersion).where(ModelVersion.weights_sha256 == fingerprint).order_by(ModelVersion.id)
            existing = session.exec(known).first()
            if existing is not None:
                return existing
            version = ModelVersion(
                name=name or f"{model_dir.name}@{fingerprint[:12]}", path=str(model_dir), base_model=base_model, adapter=adapter,
                weights_sha256=fingerprint, metrics=metrics or {},
            )  # fmt: skip
            session.add(version)
            try:
                session.commit()
            except sa.exc.IntegrityError:
                # Scorers started together on a new model (flow runs on a pool) race to register it: the one
                # whose insert lost reads the winner's row instead of failing.
                session.rollback()
                existing = session.exec(known).first()
                if existing is None:
                    raise  # the name is taken by other weights: a real conflict
                return existing
            return version

    return with_retries(run, f"registering model {model_dir}")


def promote_model(engine: Engine, model_version_id: int, metrics: dict[str, Any] | None = None) -> None:
    """Make a model version the champion (the latest promoted one is the champion)."""

    def run() -> None:
        with Session(engine) as session:
            version = session.get(ModelVersion, model_version_id)
            if version is None:
                raise KeyError(f"no model version {model_version_id} in the store")
            version.promoted_at = utc_now()
            if metrics is not None:
                version.metrics = {**version.metrics, **metrics}
            session.add(version)
            session.commit()

    with_retries(run, f"promoting model version {model_version_id}")


class Registered(NamedTuple):
    """An image's registered row, as scoring copies it: id, capture time and source."""

    id: int
    captured_at: datetime
    source_id: int | None


def _check_absolute(path: str) -> None:
    if not (PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()):
        raise ValueError(f"image path {path!r} is relative: the store keeps absolute paths, so reports find the file from any directory")


def register_images(connection: sa.Connection, images: Sequence[ScoredImage]) -> dict[str, Registered]:
    """Insert the images not yet known (by content hash); sha256 -> its registered row for all of them.

    An image already registered keeps its row: path, capture time and source as first registered.
    """
    for image in images:
        _check_absolute(image.path)
    table = ImageRecord.__table__
    now = utc_now()
    rows = [
        {"sha256": i.sha256, "path": i.path, "width": i.width, "height": i.height, "captured_at": i.captured_at,
         "source_id": i.source_id, "registered_at": now}
        for i in sorted(images, key=lambda image: image.sha256)  # key order: concurrent registrations cannot deadlock
    ]  # fmt: skip
    if rows:
        connection.execute(_insert_ignoring_duplicates(connection.dialect.name, table), rows)
    found = connection.execute(
        sa.select(table.c.sha256, table.c.id, table.c.captured_at, table.c.source_id).where(table.c.sha256.in_([i.sha256 for i in images]))
    )
    return {sha: Registered(image_id, captured_at, source_id) for sha, image_id, captured_at, source_id in found.all()}


def register_frames(engine: Engine, frames: Sequence[ScoredImage]) -> dict[str, int]:
    """Register ingested frames (not yet scored) in one transaction; a frame already known keeps its row.

    Returns sha256 -> image id. Re-copied files (same content) are not registered twice.
    """

    def run() -> dict[str, int]:
        with engine.begin() as connection:
            return {sha: row.id for sha, row in register_images(connection, frames).items()}

    return with_retries(run, "registering frames")


def write_scored_batch(engine: Engine, run_id: int, model_version_id: int, images: Sequence[ScoredImage], rescore: bool = False) -> int:
    """Store one batch (``store_scored_batch``); the number of images (newly or re-) scored."""
    return len(store_scored_batch(engine, run_id, model_version_id, images, rescore))


def store_scored_batch(
    engine: Engine, run_id: int, model_version_id: int, images: Sequence[ScoredImage], rescore: bool = False
) -> set[str]:
    """Store one batch in one transaction; images this model already scored are left as they were, unless ``rescore``.

    With ``rescore`` (``score --rescore``), an image this model version scored in another run is scored
    again: that run's detections move to ``superseded_detections`` (``inspect_core.store.history``) and the
    image's score row points to this run. Capture time and source are copied from each image's registered
    row (registered here if new). Returns the sha256 of the images this call (newly or re-) scored: an
    image another scorer took meanwhile is not among them. Retried as a whole if the database is down or locked.
    """

    def run() -> set[str]:
        with engine.begin() as connection:
            heartbeat(connection, run_id)
            registered = register_images(connection, images)
            scores = ImageScore.__table__
            ids = [row.id for row in registered.values()]
            scored_by = dict(
                connection.execute(
                    sa.select(scores.c.image_id, scores.c.run_id).where(
                        scores.c.model_version_id == model_version_id, scores.c.image_id.in_(ids)
                    )
                ).all()
            )
            unique = {i.sha256: i for i in images}.values()
            again = [i for i in unique if rescore and scored_by.get(registered[i.sha256].id, run_id) != run_id]
            fresh = sorted((i for i in unique if registered[i.sha256].id not in scored_by), key=lambda i: registered[i.sha256].id)
            if not fresh and not again:
                return set()
            now = utc_now()
            if again:
                # Lock the score rows first (in key order): a second rescoring of the same images waits for this
                # one's commit, then supersedes what it stored, instead of both moving the same rows to history.
                locked = sorted(registered[i.sha256].id for i in again)
                connection.execute(
                    sa.select(scores.c.id)
                    .where(scores.c.model_version_id == model_version_id, scores.c.image_id.in_(locked))
                    .order_by(scores.c.image_id)
                    .with_for_update()
                )
                supersede(connection, run_id, model_version_id, {registered[i.sha256].id: i for i in again}, now)
            if fresh:
                # The score row is the claim: another scorer of the same images (a second worker on the pool) may
                # have inserted it since the read above. On PostgreSQL this insert waits for that scorer's commit,
                # then skips its rows; only the images this transaction claimed get their detections written.
                claim = _insert_ignoring_duplicates(connection.dialect.name, scores).returning(scores.c.image_id)
                claimed = set(connection.execute(
                    claim,
                    [{"image_id": registered[i.sha256].id, "model_version_id": model_version_id, "run_id": run_id, "scored_at": now,
                      "detections": len(i.detections), "defects": sum(d.operating for d in i.detections),
                      "captured_at": registered[i.sha256].captured_at, "source_id": registered[i.sha256].source_id} for i in fresh],
                ).scalars())  # fmt: skip
                fresh = [i for i in fresh if registered[i.sha256].id in claimed]
            rows = [detection_row(run_id, model_version_id, registered[i.sha256], i, d) for i in (*fresh, *again) for d in i.detections]
            if rows:
                insert_detections(connection, rows)
            return {i.sha256 for i in (*fresh, *again)}

    return with_retries(run, f"writing a batch of run {run_id}")


def insert_detections(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Bulk-insert detection rows: a binary COPY on PostgreSQL, one driver executemany of plain tuples on SQLite.

    SQLAlchemy's executemany re-processes every parameter of every row in Python, and on PostgreSQL
    sends one INSERT per row; with 10k detections per batch that held the store below its insert
    targets (benchmarks/store_throughput.py). The day counts are added first, in the same transaction.
    ``rows`` (from ``detection_row``) are converted in place,
    times as the column type would (an image's detections share one); a missing polygon is SQL NULL.
    """
    add_day_counts(connection, rows)
    table = DetectionRecord.__table__
    names = [column.name for column in table.c if column.name != "id"]
    stamp = lru_cache(maxsize=None)(table.c.captured_at.type.dialect_impl(connection.dialect).bind_processor(connection.dialect))
    postgres = connection.dialect.name == "postgresql"
    for row in rows:
        row["captured_at"] = stamp(row["captured_at"])
        if not postgres and row["polygon"] is not None:  # psycopg's binary JSON dumper serialises the list itself
            row["polygon"] = json.dumps(row["polygon"])
    values = map(itemgetter(*names), rows)
    if not postgres:
        connection.exec_driver_sql(str(table.insert().compile(dialect=connection.dialect, column_keys=names)), list(values))
        return
    types = dict(connection.execute(sa.text("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = 'detections'::regclass")).all())
    with (
        connection.connection.driver_connection.cursor() as cursor,
        cursor.copy(f"COPY detections ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([types[name] for name in names])
        for value in values:
            copy.write_row(value)


def add_day_counts(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add detection rows (from ``detection_row``, not yet converted) to ``detection_day_counts``.

    One upsert row per (day, camera, model, class, bin), in key order so concurrent scorers on
    PostgreSQL lock shared keys in the same order and cannot deadlock.
    """
    counts: dict[tuple[date, int, int, str, int, bool], list[float]] = {}
    for row in rows:
        confidence = float(row["confidence"])
        key = (
            row["captured_at"].astimezone(timezone.utc).date(), row["source_id"] or NO_SOURCE, row["model_version_id"],
            row["class_name"], confidence_bin(confidence), bool(row["operating"]),
        )  # fmt: skip
        total = counts.setdefault(key, [0, 0.0, confidence])
        total[0] += 1
        total[1] += confidence
        total[2] = max(total[2], confidence)
    if not counts:
        return
    table = DetectionDayCount.__table__
    postgres = connection.dialect.name == "postgresql"
    statement = (postgresql if postgres else sqlite).insert(table)
    highest = sa.func.greatest if postgres else sa.func.max  # SQLite's two-argument max() is scalar
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={
            "n": table.c.n + statement.excluded.n,
            "confidence_sum": table.c.confidence_sum + statement.excluded.confidence_sum,
            "confidence_max": highest(table.c.confidence_max, statement.excluded.confidence_max),
        },
    )
    names = ("day", "source_key", "model_version_id", "class_name", "confidence_bin", "operating")
    connection.execute(
        statement,
        [{**dict(zip(names, key)), "n": int(n), "confidence_sum": total, "confidence_max": top}
         for key, (n, total, top) in sorted(counts.items())],
    )  # fmt: skip


def detection_row(
    run_id: int, model_version_id: int, registered: Registered, image: ScoredImage, detection: StoredDetection
) -> dict[str, Any]:
    """A detection's row: box from the scorer, capture time and source copied from the image's registered row."""
    x1, y1, x2, y2 = detection.box
    return {
        "run_id": run_id, "image_id": registered.id, "model_version_id": model_version_id, "source_id": registered.source_id,
        "captured_at": registered.captured_at, "class_name": detection.class_name, "confidence": float(detection.confidence),
        "operating": bool(detection.operating), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "nx1": x1 / image.width, "ny1": y1 / image.height, "nx2": x2 / image.width, "ny2": y2 / image.height,
        "polygon": [list(p) for p in detection.polygon] if detection.polygon else None,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Quarantine


def _record_quarantine(engine: Engine, path: str, reason: str, stage: str, run_id: int | None, sha256: str | None) -> bool:
    """One row per (path, content hash, stage): added the first time, else its reason and run brought up to date; whether new.

    A file that fails again on every rerun (the scorer is pointed at the same folder, a folder watcher
    restarts) must not grow the table by a row each time. The check and the insert are one statement
    on SQLite (which runs statements one writer at a time); PostgreSQL serialises writers of the same
    path with a transaction-scoped advisory lock, so two scorers at once still leave one row.
    """
    table = QuarantineEntry.__table__
    same = sa.and_(table.c.path == path, table.c.stage == stage, table.c.sha256 == sha256 if sha256 else table.c.sha256.is_(None))

    def run() -> bool:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"quarantine:{stage}:{path}"))))
            updates = {"reason": reason} | ({"run_id": run_id} if run_id is not None else {})
            if connection.execute(sa.update(table).where(same).values(**updates)).rowcount:
                return False
            values = {"path": path, "reason": reason, "stage": stage, "sha256": sha256, "run_id": run_id, "created_at": utc_now()}
            row = sa.select(*(sa.literal(v, table.c[k].type).label(k) for k, v in values.items())).where(~sa.exists().where(same))
            return bool(connection.execute(table.insert().from_select(list(values), row)).rowcount)

    return with_retries(run, f"quarantining {path}")


def quarantine(engine: Engine, path: str, reason: str, stage: str, run_id: int | None = None, sha256: str | None = None) -> bool:
    """Record a file that could not be used (once per path, content and stage); nothing else in its batch is affected.

    Quarantined again (a rerun), the row keeps its first time and takes the latest reason and run, so
    the run that met the file last counts it. Returns whether the file was new to the quarantine.
    """
    return _record_quarantine(engine, path, reason, stage, run_id, sha256)


def quarantine_once(engine: Engine, path: str, reason: str, stage: str, sha256: str | None = None) -> bool:
    """Record a file unless the same path with the same content is already quarantined at ``stage``; whether it was new.

    A restarted folder watcher finds the same broken files again: they are recorded once.
    """
    return _record_quarantine(engine, path, reason, stage, None, sha256)
