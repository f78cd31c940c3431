"""Hostile cases of the results store (issue 12): interrupted first opens, racing openers, files that are not
stores, URLs of databases we do not run on, retries that must not bury a cause, runs whose scorer was
killed, and files quarantined again on every rerun.

Each case goes through the path a plant takes (the ``inspect-core`` command line, in process through
``main`` or as a subprocess, or the store calls a scorer process makes) and checks the exit code, that
the message names the file and the problem, and, with its own SQL (``sqlite3``, not the store's code),
that nothing that was there before is lost or changed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import SQLModel

import inspect_core.store.opening as opening
from inspect_core.cli import main
from inspect_core.errors import EnvironmentFailure
from inspect_core.store import (
    MIGRATIONS_DIR,
    ScoredImage,
    StoredDetection,
    StoreUnavailableError,
    create_store_engine,
    ensure_source,
    finish_run,
    open_store,
    quarantine,
    reap_stale_runs,
    register_model,
    start_run,
    write_scored_batch,
)
from tests.conftest import _throwaway_postgres_database, write_image
from tests.hostile.mounts import resize, tmpfs

HEAD = opening.head_revision()
OUR_TABLES = sorted(t.name for t in SQLModel.metadata.sorted_tables)
ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# ---------------------------------------------------------------------------------------------
# Helpers: independent looks at a store, the CLI in process, child processes


def sqlite_tables(db: Path) -> list[str]:
    """The tables of a SQLite file, read with the sqlite3 module alone."""
    with sqlite3.connect(db) as connection:
        return sorted(r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))


def sqlite_count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    finally:
        engine.dispose()


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command line in process; its exit code and everything it printed."""
    code = main(argv)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output and "internal error" not in output, output
    return code, " ".join(output.split())


def ingest_empty(db_url: str, tmp_path: Path) -> list[str]:
    """``ingest folder --once`` on an empty folder: the plainest command that opens (and creates) a store."""
    folder = tmp_path / "incoming"
    folder.mkdir(exist_ok=True)
    return ["ingest", "folder", "--images", str(folder), "--db", db_url, "--camera", "cam-1", "--line", "L1", "--once",
            "--settle-seconds", "0"]  # fmt: skip


def half_built(url: str, at: str = "head") -> None:
    """The store a first open killed before its version was committed leaves: tables built up to ``at``, no version row."""
    engine = create_store_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, at)
        connection.exec_driver_sql("DELETE FROM alembic_version")
    engine.dispose()


CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

# A first open that stops (for the kill) right after it has created the ``images`` table, mid-migration.
PAUSED_OPEN = """
import pathlib, sys, time
import sqlalchemy as sa
from inspect_core.store import opening
make = opening.create_store_engine
def paused(url):
    engine = make(url)
    def pause(conn, cursor, statement, *rest):
        if statement.lstrip().startswith("CREATE TABLE images"):
            pathlib.Path(sys.argv[2]).write_text("mid-migration")
            time.sleep(120)
    sa.event.listen(engine, "before_cursor_execute", pause)
    return engine
opening.create_store_engine = paused
opening.open_store(sys.argv[1])
"""

# A first open started the moment the parent says go (all racers at once), or after ``marker`` is written.
RACING_OPEN = """
import pathlib, sys, time
from inspect_core.store import open_store
go = pathlib.Path(sys.argv[2])
pathlib.Path(sys.argv[3]).write_text("ready")
while not go.exists():
    time.sleep(0.005)
open_store(sys.argv[1])
"""


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"child exited early with {process.returncode}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# ---------------------------------------------------------------------------------------------
# 1. A first open interrupted: kill -9 mid-migration, a failure mid-migration, a full disk


@pytest.mark.injected_fault
def test_first_open_killed_mid_migration_leaves_nothing_and_the_next_command_works(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "paused"
    child = subprocess.Popen([PYTHON, "-c", PAUSED_OPEN, store_url, str(marker)], env=CHILD_ENV, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(marker, child)
    kill(child)  # the images table was created a moment ago, in the migration's one transaction
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        assert [t for t in sa.inspect(connection).get_table_names() if t in OUR_TABLES] == []  # rolled back whole
    engine.dispose()
    assert cli(ingest_empty(store_url, tmp_path), capsys)[0] == 0
    code, output = cli(["report", "--db", store_url], capsys)
    assert code == 0 and "defects per class" in output
    assert revision(store_url) == HEAD


@pytest.mark.injected_fault
@pytest.mark.parametrize("delay_s", [0.0, 0.04, 0.15], ids=["at-once", "40ms", "150ms"])
def test_first_open_killed_at_any_moment_is_finished_by_the_next_open(
    delay_s: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "results.db"
    go, ready = tmp_path / "go", tmp_path / "ready"
    child = subprocess.Popen([PYTHON, "-c", RACING_OPEN, f"sqlite:///{db}", str(go), str(ready)], env=CHILD_ENV,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(ready, child)
    go.write_text("go")
    time.sleep(delay_s)
    kill(child)
    if db.exists():  # whatever the kill left is no store yet (no tables) or a whole one, never a half
        tables = sqlite_tables(db)
        assert tables in ([], sorted([*OUR_TABLES, "alembic_version"])), tables
    assert cli(ingest_empty(f"sqlite:///{db}", tmp_path), capsys)[0] == 0
    assert cli(["report", "--db", f"sqlite:///{db}"], capsys)[0] == 0
    assert revision(f"sqlite:///{db}") == HEAD and sorted(set(sqlite_tables(db)) - {"alembic_version"}) == OUR_TABLES


@pytest.mark.injected_fault
def test_a_failure_mid_migration_is_raised_at_once_with_its_cause_and_rolls_back_whole(store_url: str, tmp_path: Path) -> None:
    attempts = []
    make = opening.create_store_engine

    def failing(url: sa.URL) -> sa.Engine:
        engine = make(url)

        def fail(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            if statement.lstrip().startswith("CREATE TABLE model_versions"):
                attempts.append(1)
            if statement.lstrip().startswith("CREATE TABLE detections"):
                raise sa.exc.OperationalError(statement, {}, Exception("database or disk is full"))

        sa.event.listen(engine, "before_cursor_execute", fail)
        return engine

    opening.create_store_engine = failing
    try:
        with pytest.raises(EnvironmentFailure, match="disk is full; free space and run again") as caught:
            open_store(store_url)
    finally:
        opening.create_store_engine = make
    assert len(attempts) == 1, "a full disk is not retried"
    assert "failed 5 times" not in str(caught.value)
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        assert [t for t in sa.inspect(connection).get_table_names() if t in OUR_TABLES] == []
    engine.dispose()
    ensure_source(open_store(store_url), "cam-1", "L1")  # space freed: the next open builds the store
    assert revision(store_url) == HEAD


@pytest.mark.injected_fault
def test_a_locked_database_mid_migration_is_retried_and_the_retry_builds_the_whole_schema(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inspect_core.store.engine.RETRY_BASE_DELAY_S", 0.001)
    make, failures = opening.create_store_engine, []

    def flaky(url: sa.URL) -> sa.Engine:
        engine = make(url)

        def fail(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            if statement.lstrip().startswith("CREATE TABLE scoring_runs") and len(failures) < 2:
                failures.append(1)
                raise sa.exc.OperationalError(statement, {}, Exception("database is locked"))

        sa.event.listen(engine, "before_cursor_execute", fail)
        return engine

    monkeypatch.setattr(opening, "create_store_engine", flaky)
    engine = open_store(store_url)
    assert len(failures) == 2 and revision(store_url) == HEAD
    assert ensure_source(engine, "cam-1", "L1") == 1


@pytest.mark.injected_fault
def test_first_open_on_a_full_disk_fails_clearly_and_works_once_space_is_freed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "disk", "48k") as disk:
        db = disk / "results.db"
        code, output = cli(ingest_empty(f"sqlite:///{db}", tmp_path), capsys)
        assert code == 1 and str(db) in output and "full" in output and "failed 5 times" not in output
        assert not db.exists() or sqlite_tables(db) == []  # no half-built schema left behind
        resize(disk, "8m")  # space freed
        assert cli(ingest_empty(f"sqlite:///{db}", tmp_path), capsys)[0] == 0
        assert cli(["report", "--db", f"sqlite:///{db}"], capsys)[0] == 0
        assert revision(f"sqlite:///{db}") == HEAD


# ---------------------------------------------------------------------------------------------
# Half-built stores left by earlier releases, foreign databases


@pytest.mark.hostile_input
@pytest.mark.parametrize("built_to", ["0001", "0003", "head"])
def test_a_half_built_store_from_an_earlier_release_is_finished(
    built_to: str, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    half_built(store_url, built_to)  # tables, an empty alembic_version: "table model_versions already exists" before
    code, output = cli(["report", "--db", store_url], capsys)
    assert code == 0 and "already exists" not in output
    assert revision(store_url) == HEAD
    engine = open_store(store_url)
    assert ensure_source(engine, "cam-1", "L1") == 1  # a working store, writes and all
    with engine.connect() as connection:
        assert sorted(t for t in sa.inspect(connection).get_table_names() if t != "alembic_version") == OUR_TABLES


@pytest.mark.hostile_input
def test_a_half_built_store_with_a_leftover_batch_table_is_finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.db"
    half_built(f"sqlite:///{db}", "0003")
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE _alembic_tmp_sources (id INTEGER)")
    assert cli(["report", "--db", f"sqlite:///{db}"], capsys)[0] == 0
    assert "_alembic_tmp_sources" not in sqlite_tables(db) and revision(f"sqlite:///{db}") == HEAD


@pytest.mark.hostile_input
def test_tables_holding_rows_without_a_schema_version_are_left_untouched(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    half_built(store_url, "head")
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO sources (camera, line) VALUES ('cam-1', 'L1')")
    code, output = cli(["report", "--db", store_url], capsys)
    assert code == 3 and "no schema version" in output and "sources (1 rows)" in output
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT camera, line FROM sources").all() == [("cam-1", "L1")]
    engine.dispose()


@pytest.mark.hostile_input
@pytest.mark.parametrize("command_name", ["report", "ingest"])
def test_a_sqlite_file_of_another_application_is_not_turned_into_a_store(
    command_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "places.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        connection.executemany("INSERT INTO moz_places (url) VALUES (?)", [("https://a",), ("https://b",)])
    argv = ["report", "--db", f"sqlite:///{db}"] if command_name == "report" else ingest_empty(f"sqlite:///{db}", tmp_path)
    code, output = cli(argv, capsys)
    assert code == 2 and str(db) in output and "not a results store" in output and "moz_places" in output
    assert sqlite_tables(db) == ["moz_places"] and sqlite_count(db, "moz_places") == 2


# ---------------------------------------------------------------------------------------------
# 2. Processes opening a fresh store at once


def race(url: str, tmp_path: Path, racers: int) -> list[subprocess.CompletedProcess]:
    go = tmp_path / "go"
    children = []
    for k in range(racers):
        ready = tmp_path / f"ready-{k}"
        child = subprocess.Popen([PYTHON, "-c", RACING_OPEN, url, str(go), str(ready)], env=CHILD_ENV, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        children.append((child, ready))
    for child, ready in children:
        wait_for(ready, child)
    go.write_text("go")
    done = []
    for child, _ in children:
        out, err = child.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
    return done


@pytest.mark.injected_fault
def test_four_processes_opening_a_fresh_postgresql_store_at_once_all_succeed(tmp_path: Path) -> None:
    for url in _throwaway_postgres_database():  # skips without a PostgreSQL server
        results = race(url, tmp_path, racers=4)
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr[-800:] for r in results if r.returncode]
        assert revision(url) == HEAD
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            assert sorted(t for t in sa.inspect(connection).get_table_names() if t != "alembic_version") == OUR_TABLES
            assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
        engine.dispose()


@pytest.mark.injected_fault
def test_four_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    results = race(f"sqlite:///{db}", tmp_path, racers=4)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr[-800:] for r in results if r.returncode]
    assert revision(f"sqlite:///{db}") == HEAD and sqlite_count(db, "alembic_version") == 1


# ---------------------------------------------------------------------------------------------
# 3. --db that is not a store, URLs of databases the store does not run on

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOT_SQLITE = {
    "png": PNG,
    "text": b"camera,line\ncam-1,L1\n",
    "json": b'{"store": "results"}',
    "random-bytes": bytes((i * 7919 + 13) % 256 for i in range(8192)),
    "sqlite-2": b"** This file contains an SQLite 2.1 database **" + bytes(1024),
    "truncated-header": b"SQLite format",
    "zip": b"PK\x03\x04" + bytes(512),
    "utf16-text": "résultats".encode("utf-16"),
    "one-byte": b"\x00",
}


@pytest.mark.hostile_input
@pytest.mark.parametrize("command_name", ["report", "ingest"])
@pytest.mark.parametrize("kind", sorted(NOT_SQLITE))
def test_a_db_file_that_is_not_sqlite_is_named_and_left_as_it_was(
    kind: str, command_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / f"store.{kind}"
    db.write_bytes(NOT_SQLITE[kind])
    argv = ["report", "--db", f"sqlite:///{db}"] if command_name == "report" else ingest_empty(f"sqlite:///{db}", tmp_path)
    code, output = cli(argv, capsys)
    assert code == 3 and str(db) in output and "is not a SQLite database" in output
    assert db.read_bytes() == NOT_SQLITE[kind]
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-journal").exists()


@pytest.mark.hostile_input
def test_a_store_file_corrupted_past_its_header_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.db"
    content = opening.SQLITE_HEADER + bytes((i * 31) % 251 for i in range(4080))
    db.write_bytes(content)
    code, output = cli(["report", "--db", f"sqlite:///{db}"], capsys)
    assert code == 3 and str(db) in output and "not a usable SQLite database" in output
    assert db.read_bytes() == content


@pytest.mark.hostile_input
@pytest.mark.parametrize("shape", ["folder", "under-a-file", "name-too-long"])
def test_a_db_path_that_cannot_be_a_file_is_a_usage_error(shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shape == "folder":
        db = tmp_path / "results.db"
        db.mkdir()
        expected = "is a folder"
    elif shape == "under-a-file":
        (tmp_path / "notes.txt").write_text("keep me")
        db = tmp_path / "notes.txt" / "results.db"
        expected = "is a file, not a folder"
    else:
        db = tmp_path / ("x" * 300 + ".db")
        expected = "too long"
    code, output = cli(ingest_empty(f"sqlite:///{db}", tmp_path), capsys)
    assert code == 2 and expected in output and db.name[:40] in output
    assert not (tmp_path / "notes.txt").is_dir() and (shape != "under-a-file" or (tmp_path / "notes.txt").read_text() == "keep me")


UNSUPPORTED_URLS = [
    "mysql://user@localhost/results", "mysql+pymysql://user:secret@db/results", "mariadb://db/results", "oracle://db/results",
    "mssql+pyodbc://db/results", "postgresql+asyncpg://db/results", "postgresql+psycopg2://db/results", "postgresql+pg8000://db/r",
    "sqlite+aiosqlite:///results.db", "redis://localhost:6379/0", "http://example.com/results.db", "file:///tmp/results.db",
    "snowflake://acct/db", "duckdb:///results.duckdb",
]
NOT_URLS = ["results.db", "/var/lib/results.db", "", "   ", "://", "sqlite", "sqlite:/results.db", "postgresql+psycopg://u@h:port/db",
            "sqlite:///a\x00b.db", "sqlite:///results.db\x00; DROP TABLE detections"]  # fmt: skip


@pytest.mark.hostile_input
@pytest.mark.parametrize("url", UNSUPPORTED_URLS)
def test_urls_of_databases_the_store_does_not_run_on_list_the_supported_ones(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = cli(["report", "--db", url], capsys)
    scheme = url.split("://")[0]
    assert code == 2 and f"{scheme}:// is not supported" in output
    assert "sqlite:///path/results.db" in output and "postgresql+psycopg://" in output and "secret" not in output


@pytest.mark.hostile_input
@pytest.mark.parametrize("url", NOT_URLS, ids=range(len(NOT_URLS)))
def test_text_that_is_no_database_url_is_a_usage_error(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = cli(ingest_empty(url, tmp_path), capsys)
    assert code == 2 and "sqlite:///path/results.db" in output
    assert list(tmp_path.iterdir()) == [tmp_path / "incoming"]  # nothing created anywhere


# ---------------------------------------------------------------------------------------------
# Retries never bury a cause that retrying cannot fix

PERMANENT = [
    "table model_versions already exists", "no such table: detections", "no such column: heartbeat_at", 'near "FROM": syntax error',
    "attempt to write a readonly database", "database or disk is full", "disk I/O error", "unable to open database file",
    "database disk image is malformed", "could not extend file \"base/16384/2619\": No space left on device",
]


@pytest.fixture
def sqlite_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    monkeypatch.setattr("inspect_core.store.engine.RETRY_BASE_DELAY_S", 0.001)
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    yield engine
    engine.dispose()


@pytest.mark.injected_fault
@pytest.mark.parametrize("message", PERMANENT)
def test_a_permanent_failure_is_raised_after_one_attempt_with_its_own_message(message: str, sqlite_engine: sa.Engine) -> None:
    raised = []

    def fail(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        raised.append(statement)
        raise sa.exc.OperationalError(statement, {}, Exception(message))

    sa.event.listen(sqlite_engine, "before_cursor_execute", fail)
    # The machine failed (full or read-only disk): an environment failure (exit 1, no "bug"); else the error itself.
    machine = any(text in message.lower() for text in ("readonly", "disk is full", "disk i/o", "unable to open", "no space left"))
    with pytest.raises(StoreUnavailableError if machine else sa.exc.OperationalError) as caught:
        ensure_source(sqlite_engine, "cam-1", "L1")
    sa.event.remove(sqlite_engine, "before_cursor_execute", fail)
    assert len(raised) == 1 and message in str(caught.value) and "failed 5 times" not in str(caught.value)
    assert ensure_source(sqlite_engine, "cam-1", "L1") == 1  # the store itself is fine


# ---------------------------------------------------------------------------------------------
# 5. Runs whose scorer was killed are reaped by the next run

SCORER = """
import json, pathlib, sys, time
from datetime import datetime, timezone
from inspect_core.store import ScoredImage, StoredDetection, open_store, register_model, start_run, write_scored_batch
engine = open_store(sys.argv[1])
model = pathlib.Path(sys.argv[2])
version = register_model(engine, model, base_model="tiny").id
run = start_run(engine, version, "cfg", 10)
for i in range(3):
    image = ScoredImage(f"{i:064x}", f"/frames/{i}.png", 100, 100, datetime(2026, 11, 1, 8, i, tzinfo=timezone.utc), None,
                        [StoredDetection("hole", 0.9, (1.0, 1.0, 9.0, 9.0))] * (i + 1))
    write_scored_batch(engine, run, version, [image])
pathlib.Path(sys.argv[3]).write_text(json.dumps({"run": run, "version": version}))
time.sleep(600)
"""


def start_scorer(url: str, tmp_path: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    import json

    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text('{"model": "m"}')
    marker = tmp_path / "scorer.json"
    marker.unlink(missing_ok=True)
    child = subprocess.Popen([PYTHON, "-c", SCORER, url, str(model), str(marker)], env=CHILD_ENV, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(marker, child)
    time.sleep(0.05)
    return child, json.loads(marker.read_text())


@pytest.mark.injected_fault
def test_a_scorer_killed_with_sigkill_is_reaped_by_the_next_run_with_its_counts(store_url: str, tmp_path: Path) -> None:
    child, ids = start_scorer(store_url, tmp_path)
    engine = open_store(store_url)
    later = start_run(engine, ids["version"], "cfg", 1)  # the scorer is alive: its run is left alone
    with engine.connect() as connection:
        assert connection.exec_driver_sql(f"SELECT status FROM scoring_runs WHERE id = {ids['run']}").scalar() == "running"
    finish_run(engine, later, "completed")
    kill(child)

    next_run = start_run(engine, ids["version"], "cfg", 1)  # the next run reaps the killed one
    raw = sa.create_engine(store_url)
    with raw.connect() as connection:
        status, error, scored, detections, finished = connection.exec_driver_sql(
            f"SELECT status, error, images_scored, detections, finished_at FROM scoring_runs WHERE id = {ids['run']}"
        ).one()
        truth = connection.exec_driver_sql(f"SELECT count(*), sum(detections) FROM image_scores WHERE run_id = {ids['run']}").one()
        assert connection.exec_driver_sql(f"SELECT status FROM scoring_runs WHERE id = {next_run}").scalar() == "running"
        assert connection.exec_driver_sql("SELECT count(*) FROM detections").scalar() == 6  # nothing it wrote is lost
    raw.dispose()
    assert status == "abandoned" and f"process {child.pid}" in error and "is gone" in error and finished is not None
    assert (scored, detections) == (truth[0], truth[1]) == (3, 6)


@pytest.mark.hostile_input
def test_runs_silent_past_the_stale_limit_are_reaped_and_recent_ones_kept(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    version = register_model(engine, tmp_path / "m", base_model="tiny").id
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:  # a run on a machine that was lost, one on a busy machine, one from before 0005
        for host, pid, beat in (("lost-box", 4242, now - timedelta(hours=3)), ("busy-box", 4243, now - timedelta(minutes=5)),
                                (None, None, None)):  # fmt: skip
            connection.execute(sa.text("INSERT INTO scoring_runs (model_version_id, config_hash, started_at, status, images_total, "
                                       "images_scored, images_skipped, images_quarantined, detections, host, pid, heartbeat_at) "
                                       "VALUES (:v, 'cfg', :started, 'running', 5, 0, 0, 0, 0, :host, :pid, :beat)"),
                               {"v": version, "started": now - timedelta(hours=2), "host": host, "pid": pid, "beat": beat})  # fmt: skip
    assert reap_stale_runs(engine) == [1, 3]
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT id, status, error FROM scoring_runs ORDER BY id").all()
    assert [r[1] for r in rows] == ["abandoned", "running", "abandoned"]
    assert "no heartbeat from process 4242 on lost-box" in rows[0][2]
    assert reap_stale_runs(engine) == []  # reaping twice changes nothing


@pytest.mark.slow
@pytest.mark.injected_fault
def test_a_score_command_killed_with_sigkill_is_reaped_by_the_next_score_command(tmp_path: Path, random_tiny_dir: Path) -> None:
    frames = tmp_path / "frames"
    for i in range(24):
        write_image(frames / f"f{i:02d}.png", 64, 64, seed=i)
    recipe = tmp_path / "score.yaml"
    recipe.write_text("score:\n  batch_size: 2\n  num_workers: 0\n  max_new_tokens: 24\n")
    db = tmp_path / "results.db"
    argv = [str(ROOT / ".venv" / "bin" / "inspect-core"), "score", "--images", str(frames), "--model", str(random_tiny_dir),
            "--db", f"sqlite:///{db}", "--config", str(recipe), "--json"]  # fmt: skip
    if not Path(argv[0]).exists():
        argv[:1] = [PYTHON, "-c", "from inspect_core.cli import console_script; console_script()"]
    victim = subprocess.Popen(argv, env=CHILD_ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, scored = time.monotonic() + 180, 0
    while time.monotonic() < deadline and victim.poll() is None and scored < 4:
        if db.exists():
            try:
                scored = sqlite_count(db, "image_scores")
            except sqlite3.OperationalError:
                scored = 0
        time.sleep(0.05)
    kill(victim)
    assert 4 <= scored < 24, "the run must be killed part-way through"
    subprocess.run(argv, env=CHILD_ENV, capture_output=True, timeout=300, check=True)
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT id, status, images_scored, error FROM scoring_runs ORDER BY id").fetchall()
        killed_rows = connection.execute("SELECT count(*) FROM image_scores WHERE run_id = ?", (runs[0][0],)).fetchone()[0]
        assert connection.execute("SELECT count(DISTINCT image_id), count(*) FROM image_scores").fetchone() == (24, 24)
    assert [r[1] for r in runs] == ["abandoned", "completed"] and f"process {victim.pid}" in runs[0][3]
    assert runs[0][2] == killed_rows >= 4


# ---------------------------------------------------------------------------------------------
# 6. One quarantine row per file, however often it is met


@pytest.mark.hostile_input
def test_scoring_the_same_bad_file_twice_leaves_one_quarantine_row(
    tmp_path: Path, random_tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "frames"
    write_image(frames / "good.png", 64, 64, seed=1)
    (frames / "broken.png").write_bytes(PNG[:40])
    recipe = tmp_path / "score.yaml"
    recipe.write_text("score:\n  num_workers: 0\n  max_new_tokens: 8\n")
    db = tmp_path / "results.db"
    argv = ["score", "--images", str(frames), "--model", str(random_tiny_dir), "--db", f"sqlite:///{db}", "--config", str(recipe)]
    for _rerun in range(2):
        assert main(argv) == 0
    capsys.readouterr()
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT path, stage, run_id FROM quarantine").fetchall()
        runs = connection.execute("SELECT id, images_quarantined FROM scoring_runs ORDER BY id").fetchall()
    assert rows == [(str(frames / "broken.png"), "score", runs[-1][0])]  # one row, counted by the run that met it last
    assert runs[-1][1] == 1 and sqlite_count(db, "image_scores") == 1


@pytest.mark.hostile_input
def test_quarantine_keeps_one_row_per_path_content_and_stage(store_url: str) -> None:
    engine = open_store(store_url)
    for reason in ("cannot decode", "cannot decode", "empty file"):
        quarantine(engine, "/frames/x.png", reason, stage="score")
    quarantine(engine, "/frames/x.png", "empty file", stage="ingest")  # another stage: its own row
    quarantine(engine, "/frames/x.png", "truncated", stage="ingest", sha256="ab" * 32)  # other content: its own row
    quarantine(engine, "/frames/x.png", "truncated", stage="ingest", sha256="ab" * 32)
    raw = sa.create_engine(store_url)
    with raw.connect() as connection:
        rows = connection.exec_driver_sql("SELECT stage, sha256, reason FROM quarantine ORDER BY id").all()
    raw.dispose()
    assert rows == [("score", None, "empty file"), ("ingest", None, "empty file"), ("ingest", "ab" * 32, "truncated")]


@pytest.mark.injected_fault
def test_two_processes_quarantining_the_same_file_at_once_leave_one_row(store_url: str, tmp_path: Path) -> None:
    open_store(store_url).dispose()
    script = """
import pathlib, sys, time
from inspect_core.store import open_store, quarantine
engine = open_store(sys.argv[1])
pathlib.Path(sys.argv[3]).write_text("ready")
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.002)
for k in range(20):
    quarantine(engine, f"/frames/bad-{k}.png", "cannot decode", stage="score")
"""
    go = tmp_path / "go"
    children = [subprocess.Popen([PYTHON, "-c", script, store_url, str(go), str(tmp_path / f"r{k}")], env=CHILD_ENV) for k in range(3)]
    for k, child in enumerate(children):
        wait_for(tmp_path / f"r{k}", child)
    go.write_text("go")
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    raw = sa.create_engine(store_url)
    with raw.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*), count(DISTINCT path) FROM quarantine").one() == (20, 20)
    raw.dispose()


# ---------------------------------------------------------------------------------------------
# Nothing written by a bad open


@pytest.mark.hostile_input
def test_a_bad_open_of_a_good_store_changes_no_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.db"
    engine = open_store(f"sqlite:///{db}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    version = register_model(engine, tmp_path / "m", base_model="tiny").id
    run = start_run(engine, version, "cfg", 2)
    images = [ScoredImage(f"{i:064x}", f"/frames/{i}.png", 10, 10, datetime(2026, 11, 1, tzinfo=timezone.utc), None,
                          [StoredDetection("hole", 0.5, (1.0, 1.0, 5.0, 5.0))]) for i in range(2)]  # fmt: skip
    write_scored_batch(engine, run, version, images)
    finish_run(engine, run, "completed")
    engine.dispose()
    before = {t: sqlite_count(db, t) for t in OUR_TABLES}
    for argv in (["report", "--db", f"sqlite:///{db}", "--since", "99999999d"], ["report", "--db", f"sqlite:///{db}", "--class", "\x00"],
                 ["report", "--db", f"mysql://{db}"]):  # fmt: skip
        assert cli(argv, capsys)[0] == 2
    assert {t: sqlite_count(db, t) for t in OUR_TABLES} == before and before["detections"] == 2

