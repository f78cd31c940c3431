"""One retry policy for every store call, reads and writes: transient failures retried, others not, a clear error at the end.

Failures are injected into a real store's connection (a cursor event raising what the driver raises
when the server is gone or SQLite is locked), so the functions under test run their real SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspect_core.errors import EnvironmentFailure
from inspect_core.store import (
    Engine,
    ReportFilter,
    StoreUnavailableError,
    champion,
    class_summary,
    defect_rate_per_line,
    ensure_source,
    open_store,
    register_model,
    unscored_images,
)

LOCKED = Exception("database is locked")


class Outage:
    """Makes the next ``failures`` statements on ``engine`` fail with ``error``; counts the failures raised."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.failures, self.raised = engine, 0, 0
        self.error: type[sa.exc.DBAPIError] = sa.exc.OperationalError
        sa.event.listen(engine, "before_cursor_execute", self._maybe_fail)

    def _maybe_fail(self, _connection: object, _cursor: object, statement: str, *_args: object) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.raised += 1
            raise self.error(statement, {}, LOCKED)

    def next(self, failures: int, error: type[sa.exc.DBAPIError] = sa.exc.OperationalError) -> Outage:
        self.failures, self.raised, self.error = failures, 0, error
        return self


@pytest.fixture
def outage(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    monkeypatch.setattr("inspect_core.store.engine.RETRY_BASE_DELAY_S", 0.001)
    injected = Outage(open_store(store_url))
    yield injected
    sa.event.remove(injected.engine, "before_cursor_execute", injected._maybe_fail)


def test_writes_and_reads_ride_out_a_short_outage(outage: Outage, tmp_path: Path) -> None:
    engine = outage.engine
    source = ensure_source(engine, "cam-1", "L1")
    assert ensure_source(engine, "cam-1", "L1") == source and outage.raised == 0
    other = ensure_source(outage.next(2).engine, "cam-2", "L1")
    assert outage.raised == 2 and other != source and ensure_source(engine, "cam-2", "L1") == other  # a write, on its third attempt
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    version = register_model(outage.next(1).engine, tmp_path / "m", base_model="tiny")
    assert outage.raised == 1 and version.id is not None
    assert champion(outage.next(3).engine) is None and outage.raised == 3  # a read
    assert unscored_images(outage.next(4).engine, version.id) == [] and outage.raised == 4  # the last of 5 attempts works
    assert defect_rate_per_line(outage.next(2).engine, ReportFilter()).empty and outage.raised == 2  # a report query
    assert class_summary(outage.next(1).engine, ReportFilter(line="L1")).empty and outage.raised == 1


def test_a_database_down_through_every_attempt_is_a_store_unavailable_error_with_the_cause(outage: Outage) -> None:
    with pytest.raises(StoreUnavailableError, match="registering camera 'cam-9' on line 'L9': the results store failed 5 times") as caught:
        ensure_source(outage.next(99).engine, "cam-9", "L9")
    assert outage.raised == 5
    assert "last error: database is locked" in str(caught.value)
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError) and isinstance(caught.value, EnvironmentFailure)
    with pytest.raises(StoreUnavailableError, match="reading a report: the results store failed 5 times"):
        defect_rate_per_line(outage.next(99).engine, ReportFilter())


def test_errors_that_are_not_transient_are_raised_at_once(outage: Outage) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        ensure_source(outage.next(3, sa.exc.IntegrityError).engine, "cam-1", "L1")
    assert outage.raised == 1  # one attempt: an integrity error would fail the same way again
    with pytest.raises(sa.exc.ProgrammingError):
        champion(outage.next(3, sa.exc.ProgrammingError).engine)
    assert outage.raised == 1
