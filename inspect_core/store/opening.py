"""Opening a results store: one policy for every command, flow and worker that opens one.

1. The URL and, for SQLite, the file are checked first, so a typo, an unsupported database or a file
   that is not a SQLite database (a PNG, a text file) is a message naming it, not a driver traceback.
2. The schema is upgraded by Alembic in **one transaction under one lock**: on SQLite the migration
   runs in a ``BEGIN IMMEDIATE`` transaction (SQLite's DDL is transactional, but Python's sqlite3
   commits each DDL statement on its own unless told otherwise); on PostgreSQL it holds the advisory
   lock ``MIGRATION_LOCK`` for the transaction. A process killed mid-migration (kill -9, a full disk)
   leaves the store as it was, and processes opening a fresh store at once take turns instead of
   racing on ``CREATE TABLE`` (PostgreSQL's ``UniqueViolation`` on ``pg_type``); the later ones find
   the schema at head and do nothing. A store already at head is checked without the lock.
3. A half-built store left by earlier versions (the results-store tables, empty, with no schema
   version: a first open killed before this policy) is finished: its empty tables are dropped and the
   schema is built again in the same transaction. Tables holding rows without a schema version are
   never touched: that is a clear error, since nothing can tell which schema they follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import inspect_core.store.review_schema
import inspect_core.store.schema  # noqa: F401  (registers the tables on SQLModel.metadata)
from inspect_core.errors import BadInputError, EnvironmentFailure, UsageError
from inspect_core.store.engine import (
    StoreUnavailableError,
    create_store_engine,
    is_transient,
    parse_store_url,
    safe_url,
    sqlite_file,
    with_retries,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x1A5EC7C0DE  # pg_advisory_xact_lock key: one migration at a time per PostgreSQL database
LOCK_TIMEOUT = "120s"  # a migration stuck that long is reported (and retried), not waited on forever
SQLITE_HEADER = b"SQLite format 3\x00"
_ALEMBIC_TABLES = ("alembic_version",)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The store's schema revision (None: no schema version recorded)."""
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _locked(engine: Engine) -> Iterator[sa.Connection]:
    """A connection in one transaction that no other migrator of this store runs alongside."""
    with engine.connect() as connection:
        if engine.dialect.name != "sqlite":
            with connection.begin():
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                yield connection
            return
        # Python's sqlite3 (before 3.12) commits every DDL statement at once; with isolation_level None
        # it leaves transactions to us, and BEGIN IMMEDIATE takes SQLite's write lock for the whole migration.
        raw = connection.connection.driver_connection
        previous = raw.isolation_level
        raw.isolation_level = None
        try:
            with connection.begin():
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        finally:
            raw.isolation_level = previous


def _rows(connection: sa.Connection, table: str) -> int:
    return int(connection.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())


def finish_half_built(connection: sa.Connection, where: str) -> list[str]:
    """Drop the empty results-store tables of a store that has no schema version; the tables dropped.

    Such a store is a first migration that was interrupted before it could commit its version
    (kill -9, a full disk, under releases that committed DDL statement by statement). Its tables are
    empty (nothing can be written before the version exists), so rebuilding them loses nothing.
    """
    if current_revision(connection) is not None:
        return []
    existing = set(sa.inspect(connection).get_table_names()) - set(_ALEMBIC_TABLES)
    ours = [t.name for t in reversed(SQLModel.metadata.sorted_tables) if t.name in existing]
    leftovers = ours + sorted(n for n in existing if n.startswith("_alembic_tmp_"))
    foreign = sorted(existing - set(leftovers))
    if foreign and connection.dialect.name == "sqlite":
        raise UsageError(
            f"{where} is a SQLite database but not a results store: it holds other tables ({', '.join(foreign[:8])}); "
            "point the store URL at a results store, or at a new file to create one"
        )
    if not leftovers:
        return []
    counts = {name: _rows(connection, name) for name in leftovers}
    full = {name: n for name, n in counts.items() if n}
    if full:
        held = ", ".join(f"{name} ({n} rows)" for name, n in sorted(full.items()))
        raise BadInputError(
            f"{where} has results-store tables holding data but no schema version: {held}; it was not built by inspect-core's "
            "migrations, so it is left untouched: restore it from a backup or point the store URL at another database"
        )
    for name in leftovers:
        connection.exec_driver_sql(f'DROP TABLE "{name}"')
    log.warning("%s: finished a half-built results store (dropped its empty tables %s and built the schema)", where, ", ".join(leftovers))
    return leftovers


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (creates it on an empty database), in one locked transaction.

    A store already at head is left alone without taking the lock; otherwise a half-built store is
    finished first (``finish_half_built``).
    """
    if revision == "head":
        with engine.connect() as connection:
            if current_revision(connection) == head_revision():
                return
    _alembic(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (for rolling back a release; each migration says what it cannot undo)."""
    _alembic(engine, command.downgrade, revision)


def _alembic(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = _config()
    with _locked(engine) as connection:
        if step is command.upgrade:
            finish_half_built(connection, safe_url(engine.url))
        config.attributes["connection"] = connection
        step(config, revision)


def check_sqlite_file(path: Path, create: bool) -> None:
    """A SQLite store's file: missing (created only with ``create``), a folder, unreadable, or not a SQLite database."""
    try:
        _check_sqlite_file(path, create)
    except (FileNotFoundError, UsageError, BadInputError):
        raise
    except OSError as error:  # a name too long, a loop of links, a folder we may not look into
        raise UsageError(f"results store {path}: {error.strerror or error}") from None


def _check_sqlite_file(path: Path, create: bool) -> None:
    if path.is_dir():
        raise UsageError(f"results store {path} is a folder, not a SQLite file; name a file such as {path / 'results.db'}")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no results store at {path}")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"results store {path}: {parent} is a file, not a folder")
                break
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise UsageError(f"results store {path} cannot be read: {error.strerror or error}") from None
    if head and head != SQLITE_HEADER:
        raise BadInputError(
            f"results store {path} is not a SQLite database (it starts with {head[:8]!r}); "
            "point the store URL at a results store, or at a new file to create one"
        )


def open_store(url: str, create: bool = True) -> Engine:
    """Connect to the store at ``url`` and upgrade its schema; retried while the database is down.

    With ``create`` False a SQLite file that does not exist is an error (``FileNotFoundError``), not a
    new empty store: a report on a mistyped path says so instead of reporting nothing. A file that
    is not a SQLite database, a corrupt one, or a schema that cannot be upgraded is a clear error naming
    the store, raised at once (never retried into "failed 5 times").
    """
    parsed = parse_store_url(url)
    where = safe_url(parsed)
    path = sqlite_file(parsed)
    if path is not None:
        check_sqlite_file(path, create)
        where = str(path)
    engine = create_store_engine(parsed)
    try:
        with_retries(lambda: migrate(engine), f"opening {safe_url(parsed)}")
    except sa.exc.DBAPIError as error:
        engine.dispose()
        raise _opening_error(where, error) from error
    except StoreUnavailableError as error:  # a full or read-only disk, raised at once: say it as opening says it
        engine.dispose()
        cause = error.__cause__
        if isinstance(cause, sa.exc.DBAPIError) and not is_transient(cause):
            raise _opening_error(where, cause) from cause
        raise
    except BaseException:
        engine.dispose()
        raise
    return engine


def _opening_error(where: str, error: sa.exc.DBAPIError) -> Exception:
    """The user-facing error for a store that could not be opened for a reason retrying cannot fix."""
    cause = str(error.orig or error).strip().splitlines()[0]
    lowered = cause.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return BadInputError(f"results store {where} is not a usable SQLite database: {cause}")
    if "disk is full" in lowered or "disk i/o" in lowered:
        return EnvironmentFailure(f"results store {where}: {cause}; free space and run again (nothing was changed)")
    if "readonly" in lowered or "unable to open" in lowered or "permission denied" in lowered:
        return UsageError(f"results store {where} cannot be written: {cause}")
    if is_transient(error):  # unreachable: with_retries turns these into StoreUnavailableError
        return EnvironmentFailure(f"results store {where}: {cause}")
    return EnvironmentFailure(f"results store {where}: upgrading its schema to {head_revision()} failed: {cause}")
