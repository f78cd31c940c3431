"""Scoring runs: started, heartbeat, finished, and reaped when their process is gone.

A run records the host and pid of the process scoring it, and every batch it writes touches its
``heartbeat_at`` in the batch's own transaction. A scorer killed with kill -9 (or a machine that was
lost) never finishes its run; the next run to start (``start_run``) reaps it: a run still ``running``
whose process is gone from this host (``os.kill(pid, 0)``, a zombie counts as gone), or whose
heartbeat is older than ``STALE_AFTER`` (any host, and runs from before 0005 without a pid), is
marked ``abandoned`` with the reason, and its counts are recomputed from the rows it wrote, exactly as
``finish_run`` does, so reports of runs never show a run stuck or a count that drifted. Its scored
images stay scored: the restarted run skips them (exactly-once scoring, ``inspect_core.store.writes``).
A reaped run that was in fact alive (a heartbeat delayed past ``STALE_AFTER``) is set right by its own
``finish_run``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from inspect_core.store.engine import with_retries
from inspect_core.store.schema import ImageScore, QuarantineEntry, ScoringRun, utc_now

STALE_AFTER = timedelta(hours=1)  # a batch takes seconds to minutes; an hour without one is a lost run
HOST = socket.gethostname()
_RUNS = ScoringRun.__table__


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (a zombie, killed but not yet waited for, is not)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows: rely on the heartbeat there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _recount(session: Session, record: ScoringRun) -> None:
    """A run's counts from the rows it wrote, so they cannot drift."""
    scored = session.exec(
        select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(ImageScore.detections), 0), sa.func.coalesce(sa.func.sum(ImageScore.defects), 0)
        ).where(ImageScore.run_id == record.id)
    ).one()
    record.images_scored, record.detections, record.defects = int(scored[0]), int(scored[1]), int(scored[2])
    record.images_quarantined = session.exec(select(sa.func.count()).where(QuarantineEntry.run_id == record.id)).one()


def _gone(record: ScoringRun, now: datetime, stale_after: timedelta) -> str | None:
    """Why a running run's process is gone, or None while it may still be working."""
    last = record.heartbeat_at or record.started_at
    if record.host == HOST and record.pid is not None and record.pid != os.getpid() and not process_alive(record.pid):
        return f"its process {record.pid} on {record.host} is gone (last heartbeat {last:%Y-%m-%d %H:%M:%S} UTC)"
    if last < now - stale_after:
        where = f"process {record.pid} on {record.host}" if record.pid is not None else "its process"
        return f"no heartbeat from {where} since {last:%Y-%m-%d %H:%M:%S} UTC (over {stale_after} ago)"
    return None


def reap_stale_runs(engine: Engine, stale_after: timedelta = STALE_AFTER, now: datetime | None = None) -> list[int]:
    """Mark runs still ``running`` whose process is gone as ``abandoned``, counts recomputed; their ids."""

    def run() -> list[int]:
        moment = now or utc_now()
        reaped = []
        with Session(engine, expire_on_commit=False) as session:
            for record in session.exec(select(ScoringRun).where(ScoringRun.status == "running")).all():
                reason = _gone(record, moment, stale_after)
                if reason is None:
                    continue
                _recount(session, record)
                record.status, record.error, record.finished_at = "abandoned", f"abandoned: {reason}", moment
                session.add(record)
                reaped.append(int(record.id))
            session.commit()
        return reaped

    return with_retries(run, "reaping scoring runs whose process is gone")


def start_run(engine: Engine, model_version_id: int, config_hash: str, images_total: int, thresholds: dict[str, Any] | None = None) -> int:
    """A new ``running`` run owned by this process, recording the operating ``thresholds`` it applies; runs whose
    process is gone are reaped first."""
    reap_stale_runs(engine)

    def run() -> int:
        with Session(engine) as session:
            record = ScoringRun(model_version_id=model_version_id, config_hash=config_hash, images_total=images_total,
                                host=HOST, pid=os.getpid(), heartbeat_at=utc_now(), thresholds=thresholds)  # fmt: skip
            session.add(record)
            session.commit()
            return int(record.id)

    return with_retries(run, "starting a scoring run")


def heartbeat(connection: sa.Connection, run_id: int) -> None:
    """Touch a run's heartbeat, inside the transaction of the batch it is writing."""
    connection.execute(sa.update(_RUNS).where(_RUNS.c.id == run_id).values(heartbeat_at=utc_now()))


def finish_run(
    engine: Engine, run_id: int, status: str, error: str | None = None, dropped_labels: dict[str, int] | None = None
) -> ScoringRun:
    """Close a run; its counts are recomputed from the rows it wrote, so they cannot drift. ``dropped_labels``
    (answers outside the model's vocabulary) join the thresholds recorded on the run."""

    def run() -> ScoringRun:
        with Session(engine, expire_on_commit=False) as session:
            record = session.get(ScoringRun, run_id)
            _recount(session, record)
            record.status, record.error, record.finished_at = status, error, utc_now()
            record.heartbeat_at = record.finished_at
            if dropped_labels:
                record.thresholds = {**(record.thresholds or {}), "dropped_labels": dropped_labels}
            session.add(record)
            session.commit()
            return record

    return with_retries(run, f"finishing scoring run {run_id}")


def add_skipped(engine: Engine, run_id: int, count: int) -> None:
    def run() -> None:
        with engine.begin() as connection:
            connection.execute(sa.update(_RUNS).where(_RUNS.c.id == run_id).values(images_skipped=_RUNS.c.images_skipped + count))
            heartbeat(connection, run_id)

    with_retries(run, f"counting skipped images of run {run_id}")
