"""Where and when given frames were captured: what the HTML report prints beside each top frame's thumbnail.

``reports.top_image_boxes`` picks the frames (and their boxes); this adds their capture time, camera,
line and size, one row per image, for at most the few dozen frames a report shows.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.store.reports import _frame
from inspect_core.store.schema import ImageRecord, Source

_I = ImageRecord.__table__
_S = Source.__table__


def frame_details(engine: Engine, image_ids: Iterable[int]) -> pd.DataFrame:
    """One row per image id: image_id, captured_at (UTC), camera, line (None without a source), width, height, path."""
    ids = sorted({int(i) for i in image_ids})
    statement = (
        sa.select(_I.c.id.label("image_id"), _I.c.captured_at, _S.c.camera, _S.c.line, _I.c.width, _I.c.height, _I.c.path)
        .select_from(_I.outerjoin(_S, _S.c.id == _I.c.source_id))
        .where(_I.c.id.in_(ids))
    )
    frame = _frame(engine, statement, "reading the top frames")
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame
