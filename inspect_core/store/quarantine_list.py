"""The quarantined files, newest first: what ``inspect-core report quarantine`` lists.

Ingest and scoring put a file they cannot use aside with its reason (``writes.quarantine``) and go
on; a run's summary only counts them ("3 quarantined"). This reads them back: path, stage, reason,
when, and the scoring run or content hash where one was recorded.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.errors import UsageError
from inspect_core.store.reports import _frame
from inspect_core.store.schema import QuarantineEntry

_Q = QuarantineEntry.__table__
STAGES = ("ingest", "score")
COLUMNS = ["created_at", "stage", "reason", "path", "run_id", "sha256"]


def quarantined_files(
    engine: Engine, since: datetime | None = None, stage: str | None = None, limit: int | None = None
) -> tuple[pd.DataFrame, int]:
    """The quarantined files (newest first, at most ``limit``) since ``since`` at ``stage``, and how many match in all."""
    if stage is not None and stage not in STAGES:
        raise UsageError(f"stage {stage!r}: use {' or '.join(STAGES)}")
    if since is not None and since.utcoffset() is None:
        raise UsageError(f"since must be timezone-aware (the store keeps UTC): got {since.isoformat()}")
    conditions = []
    if since is not None:
        conditions.append(_Q.c.created_at >= since)
    if stage is not None:
        conditions.append(_Q.c.stage == stage)
    rows = sa.select(*(_Q.c[name] for name in COLUMNS)).where(*conditions).order_by(_Q.c.created_at.desc(), _Q.c.id.desc()).limit(limit)
    frame = _frame(engine, rows, "listing the quarantined files")
    total = int(_frame(engine, sa.select(sa.func.count()).select_from(_Q).where(*conditions), "counting the quarantined files").iloc[0, 0])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["run_id"] = [None if pd.isna(v) else int(v) for v in frame["run_id"]]
    return frame, total
