"""Connecting to the results store, and the one retry policy of every store call.

SQLite (a file, WAL mode: readers never block the scorer) or PostgreSQL (by URL). Every read and
write of the store is one transaction run through ``with_retries``: a restarted database server, a
dropped connection or a locked SQLite file is retried with exponential backoff (tenacity), since the
transaction was rolled back and running it again is safe. Nothing else is retried: a bug, a schema
that does not fit or a full disk raises at once with its own message, not after retries that bury it
under "failed 5 times". Callers (flows, CLI, folder watch) add no retries of their own on top, so one
call is tried ``RETRY_ATTEMPTS`` times, not that times a Prefect task's retries.

Opening a store (URL and file checks, the schema upgrade under a lock) is ``inspect_core.store.opening``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from inspect_core.errors import EnvironmentFailure, UsageError

RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.2  # waits 0.2, 0.4, 0.8, 1.6 s between the 5 attempts: a database restart takes a few seconds
T = TypeVar("T")

# The URLs the store runs on; a bare postgresql:// (or postgres://) means psycopg 3, the driver installed.
SUPPORTED_URLS = "sqlite:///path/results.db (a file) or postgresql+psycopg://user@host/db"
_SUPPORTED_DRIVERS = {"sqlite": "sqlite", "sqlite+pysqlite": "sqlite", "postgresql+psycopg": "postgresql+psycopg",
                      "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}  # fmt: skip

# OperationalError is the DB-API's class for "down, gone or locked", but SQLite raises it for much
# more: a table that already exists, a missing column, a syntax error, a read-only or full disk.
# Those fail the same way every time, so they are not transient (matched on SQLite's message text).
_PERMANENT_MESSAGES = ("already exists", "no such table", "no such column", "has no column", "duplicate column", "syntax error",
                       "readonly database", "disk is full", "disk i/o error", "unable to open database file", "not a database",
                       "malformed", "no space left")  # fmt: skip
# Of those, the ones where the machine failed, not the code: a full or read-only disk, a file that cannot
# be opened or read. They raise at once as StoreUnavailableError (exit 1, "the machine failed"), not as a bug.
_MACHINE_MESSAGES = ("readonly database", "disk is full", "disk i/o error", "unable to open database file", "no space left")


class StoreUnavailableError(EnvironmentFailure):
    """The database could not be reached or stayed locked through every retry."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a database that is down, gone or locked (the transaction was rolled back).

    ``OperationalError`` is the DB-API's class for those (connection refused, server closed the
    connection, database is locked), except the permanent SQLite failures it also carries
    (``_PERMANENT_MESSAGES``); a DB-API error that invalidated its connection is transient too.
    Integrity, programming and data errors are bugs or bad input: retrying would fail the same way.
    """
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError):
        return False
    message = str(error.orig or error).lower()
    return not any(text in message for text in _PERMANENT_MESSAGES)


def _give_up(what: str, attempts: int) -> Callable[[RetryCallState], Any]:
    def raise_unavailable(state: RetryCallState) -> Any:
        error = state.outcome.exception() if state.outcome is not None else None
        cause = getattr(error, "orig", None) or error
        raise StoreUnavailableError(f"{what}: the results store failed {attempts} times; last error: {cause}") from error

    return raise_unavailable


def with_retries(operation: Callable[[], T], what: str, attempts: int | None = None, base_delay_s: float | None = None) -> T:
    """Run ``operation`` (one whole transaction) under the store's retry policy; ``what`` names it in the error.

    Transient failures (``is_transient``) are retried up to ``attempts`` times in all, waiting
    ``base_delay_s`` * 2**k between them; after the last a ``StoreUnavailableError`` carries the real
    cause. A disk that is full or read-only raises ``StoreUnavailableError`` at once; anything else
    raises at once, unchanged.
    """
    attempts = attempts or RETRY_ATTEMPTS
    base_delay_s = RETRY_BASE_DELAY_S if base_delay_s is None else base_delay_s
    policy = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=base_delay_s, exp_base=2, min=0, max=60),
        retry=retry_if_exception(is_transient),
        retry_error_callback=_give_up(what, attempts),
    )
    try:
        return policy(operation)
    except sa.exc.OperationalError as error:
        cause = str(error.orig or error)
        if any(text in cause.lower() for text in _MACHINE_MESSAGES):
            raise StoreUnavailableError(f"{what}: the results store cannot be written or read: {cause}") from error
        raise


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def safe_url(url: sa.URL) -> str:
    """The URL as it may be printed: the password hidden."""
    return url.render_as_string(hide_password=True)


def parse_store_url(url: str) -> sa.URL:
    """``url`` parsed, with its driver checked: SQLite, or PostgreSQL through psycopg 3; anything else is a ``UsageError``."""
    if not isinstance(url, str) or not url.strip() or "\x00" in url:
        raise UsageError(f"results store URL {url!r} is empty or holds a NUL byte; use {SUPPORTED_URLS}")
    try:
        parsed = sa.engine.make_url(url.strip())
    except (sa.exc.ArgumentError, ValueError) as error:  # ValueError: a port that is not a number
        raise UsageError(f"results store URL {url!r} is not a database URL ({error}); use {SUPPORTED_URLS}") from None
    driver = _SUPPORTED_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(f"results store URL {safe_url(parsed)!r}: {parsed.drivername}:// is not supported; use {SUPPORTED_URLS}")
    return parsed.set(drivername=driver)


def sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite store URL; None for PostgreSQL and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or url.database.startswith("file:"):
        return None
    return Path(url.database)


def create_store_engine(url: str | sa.URL) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and WAL with a busy timeout is set; PostgreSQL runs without JIT."""
    parsed = parse_store_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Report queries are short: PostgreSQL's JIT compiled the ones over 1M detections for longer than
    # they ran (defect rate per line for one class over 30 days: p50 75 -> 49 ms without it).
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10, "options": "-c jit=off"})
    except (sa.exc.ArgumentError, ModuleNotFoundError) as error:
        raise UsageError(f"results store URL {safe_url(parsed)!r}: {error}") from None
