"""Scoring runs record their process and a heartbeat (migration 0005), and runs whose process is gone are reaped."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from inspect_core.store import (
    ScoredImage,
    StoredDetection,
    downgrade,
    finish_run,
    open_store,
    reap_stale_runs,
    register_model,
    start_run,
    write_scored_batch,
)


def version_of(engine: sa.Engine, root: Path) -> int:
    (root / "m").mkdir(exist_ok=True)
    (root / "m" / "config.json").write_text("{}")
    return register_model(engine, root / "m", base_model="tiny").id


def image(index: int) -> ScoredImage:
    return ScoredImage(f"{index:064x}", f"/frames/{index}.png", 10, 10, datetime(2026, 11, 1, tzinfo=timezone.utc), None,
                       [StoredDetection("hole", 0.5, (1.0, 1.0, 5.0, 5.0))])  # fmt: skip


def test_a_run_records_its_process_and_each_batch_beats_its_heartbeat(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    version = version_of(engine, tmp_path)
    run = start_run(engine, version, "cfg", 2)
    with engine.connect() as connection:
        host, pid, first = connection.execute(sa.text("SELECT host, pid, heartbeat_at FROM scoring_runs WHERE id = :id"), {"id": run}).one()
    assert (host, pid) == (socket.gethostname(), os.getpid()) and first is not None
    write_scored_batch(engine, run, version, [image(1)])
    with engine.connect() as connection:
        later = connection.execute(sa.text("SELECT heartbeat_at FROM scoring_runs WHERE id = :id"), {"id": run}).scalar()
    assert str(later) > str(first)
    assert reap_stale_runs(engine) == []  # this process is alive: its run is kept
    assert finish_run(engine, run, "completed").status == "completed"


def test_stores_from_before_run_heartbeats_upgrade_reap_their_stuck_runs_and_downgrade(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    version = version_of(engine, tmp_path)
    downgrade(engine, "0004")  # a store of the release before: runs without host, pid or heartbeat
    started = datetime.now(timezone.utc) - timedelta(hours=5)
    with engine.begin() as connection:
        for status in ("running", "completed"):
            connection.execute(sa.text("INSERT INTO scoring_runs (model_version_id, config_hash, started_at, status, images_total, "
                                       "images_scored, images_skipped, images_quarantined, detections) "
                                       "VALUES (:v, 'cfg', :t, :s, 3, 0, 0, 0, 0)"), {"v": version, "t": started, "s": status})  # fmt: skip
    engine = open_store(store_url)  # upgraded with its runs
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, status, host, pid, heartbeat_at FROM scoring_runs ORDER BY id")).all()
    assert [(r.status, r.host, r.pid, r.heartbeat_at) for r in rows] == [("running", None, None, None), ("completed", None, None, None)]
    write_scored_batch(engine, rows[0].id, version, [image(7)])  # what the stuck run had written before it was killed,
    with engine.begin() as connection:  # under the old release, which kept no heartbeat
        connection.execute(sa.text("UPDATE scoring_runs SET heartbeat_at = NULL"))
    assert reap_stale_runs(engine, now=started + timedelta(minutes=30)) == []  # silent for less than STALE_AFTER
    new_run = start_run(engine, version, "cfg", 1)  # hours later: the next run reaps it, counts recomputed
    with engine.connect() as connection:
        reaped = connection.execute(sa.text("SELECT status, images_scored, detections, error FROM scoring_runs WHERE id = :i"),
                                    {"i": rows[0].id}).one()  # fmt: skip
    assert reaped[:3] == ("abandoned", 1, 1) and "no heartbeat" in reaped[3]
    finish_run(engine, new_run, "completed")

    downgrade(engine, "0004")  # and back: every run and score kept, the new columns gone
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT status FROM scoring_runs ORDER BY id")).scalars().all() == [
            "abandoned", "completed", "completed"
        ]
        assert connection.execute(sa.text("SELECT count(*) FROM image_scores")).scalar() == 1
        assert "heartbeat_at" not in {c["name"] for c in sa.inspect(connection).get_columns("scoring_runs")}
    assert open_store(store_url) is not None
