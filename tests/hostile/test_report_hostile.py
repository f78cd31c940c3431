"""Hostile cases of ``inspect-core report`` (issue 12): time bounds out of any calendar, filter values full of SQL,
markup, NUL bytes and odd unicode, output paths that cannot or must not be written, full disks, and
property-based fuzzing of every filter against a plain-Python oracle.

The store is the seeded one of ``tests/store/seeded.py`` (known detections, ``expected`` its oracle).
Every test checks, with ``sqlite3`` alone, that the store's row counts are what they were: a report
reads, it never changes a row.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from inspect_core.cli import common, main
from inspect_core.errors import UsageError
from inspect_core.reporting import parse_when
from inspect_core.store import (
    ReportFilter,
    ScoredImage,
    StoredDetection,
    class_summary,
    confidence_histogram,
    detections_frame,
    ensure_source,
    open_store,
    write_scored_batch,
)
from inspect_core.store.reports import EARLIEST, LATEST
from tests.hostile.mounts import read_only_folder, tmpfs
from tests.store.seeded import ALL_ROWS, INJECTION, LINES, Store, expected, model_and_run, seed_store

UTC = timezone.utc
TABLES = sorted(t.name for t in SQLModel.metadata.sorted_tables)


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("report_store")
    return seed_store(f"sqlite:///{root / 'results.db'}", root)


@pytest.fixture
def store(seeded: Store) -> Iterator[Store]:
    """The seeded store; after the test, the same row count in every table (read with sqlite3, not the store's code)."""
    db = Path(seeded.url.removeprefix("sqlite:///"))
    before = counts(db)
    assert before["detections"] == len(ALL_ROWS)
    yield seeded
    assert counts(db) == before


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command line in process: exit code, stdout, and stderr with its line breaks folded."""
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    return code, captured.out, " ".join(captured.err.split())


def report(store: Store, *args: str) -> list[str]:
    return ["report", "--db", store.url, *args]


# ---------------------------------------------------------------------------------------------
# 4. Time bounds: spans past the calendar, years out of range, text that is no time

BAD_TIMES = [
    "99999999d", "99999999999999w", "9" * 5000 + "d", "9999-12-31", "9999-12-31T23:59:59-05:00", "9000-01-01", "0001-01-01",
    "0001-01-01T00:00+01:00", "1899-12-31T23:59:59Z", "yesterday", "", "7x", "-7d", "7 days ago", "2026-13-01", "2026-02-30",
    "2026-11-01T25:00", "2026-11-01T08:00+25:00", "[bold]7d[/bold]", "\x00", "7d\x00", "7d; DROP TABLE detections", "1e9d",
    "NaN", "inf", "\uff12\uff10\uff12\uff16-11-01", "2026-11-01 08:00 CET", "now",
]


@pytest.mark.hostile_input
@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize("value", BAD_TIMES, ids=range(len(BAD_TIMES)))
def test_a_time_bound_that_is_no_usable_time_is_a_usage_error(option: str, value: str, store: Store, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(report(store, option, value), capsys)
    assert code == 2 and out == ""
    assert option in err or f"{option[2:]} " in err, err
    assert "not a time" in err or "out of range" in err or "reaches back" in err


@pytest.mark.hostile_input
@pytest.mark.parametrize(("since", "until"), [
    ("8999-12-31T23:59", None), ("1900-01-01", None), ("0m", None), ("1900-01-01", "8999-12-31"), ("6000w", None),
    ("2026-11-02T00:00+14:00", "2026-11-02T00:00-12:00"), ("2026-11-01T08:00", "2026-11-01T08:00"), ("2026-11-02", "2026-11-01"),
])  # fmt: skip
def test_extreme_but_valid_time_bounds_report_exactly_what_they_cover(
    since: str, until: str | None, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = report(store, "--since", since, "--format", "json", "--out", str(tmp_path / "rows.json"), "--json")
    code, out, _err = cli([*argv, *(["--until", until] if until else [])], capsys)
    want = expected(ReportFilter(since=parse_when(since), until=parse_when(until) if until else None))
    assert code == 0 and json.loads(out)["rows"] == len(want) == len(json.loads((tmp_path / "rows.json").read_text()))


# ---------------------------------------------------------------------------------------------
# Filter values full of SQL, markup and odd unicode: plain values to match, never SQL, never a crash

NASTY_TEXT = [
    INJECTION, "'; DROP TABLE detections; --", '" OR ""="', "%", "_", "*", "\\", "hole%", "h_le", "HOLE", " hole", "hole ",
    "[bold]hole[/bold]", "[/]", "\u202ehole", "hole\u200b", "ho\u0301le", "\U0001f573\ufe0f", "a" * 100_000, "NULL", "null", "0",
    "1=1", "$1", "?", ":line", "%(line)s", "\n", "\t", "line-A\n", "line-A' --",
]


@pytest.mark.hostile_input
@pytest.mark.parametrize("option", ["--line", "--camera", "--class", "--model"])
@pytest.mark.parametrize("value", NASTY_TEXT, ids=range(len(NASTY_TEXT)))
def test_nasty_filter_text_matches_nothing_and_changes_nothing(
    option: str, value: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_file = tmp_path / "rows.json"
    code, out, _err = cli(report(store, option, value, "--format", "json", "--out", str(out_file), "--json"), capsys)
    assert code == 0
    assert json.loads(out)["rows"] == 0 and json.loads(out_file.read_text()) == []


@pytest.mark.hostile_input
@pytest.mark.parametrize("option", ["--line", "--camera", "--class", "--model"])
@pytest.mark.parametrize("value", ["\x00", "hole\x00", "\x00' OR 1=1 --", "bad\udcffbytes"], ids=["nul", "end-nul", "nul-sql", "surrogate"])
def test_text_no_store_can_hold_is_a_usage_error_naming_the_filter(
    option: str, value: str, store: Store, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = cli(report(store, option, value), capsys)
    field = "class" if option == "--class" else option[2:]
    assert code == 2 and out == "" and f"{field} filter" in err and ("NUL byte" in err or "not valid text" in err)


@pytest.mark.hostile_input
@pytest.mark.parametrize("args", [
    ["--limit", "0"], ["--limit", "-5"], ["--limit", str(2**63)], ["--limit", "abc"], ["--limit", "1.5"], ["--top", "0"],
    ["--top", str(10**20)], ["--min-confidence", "nan"], ["--min-confidence", "inf"], ["--min-confidence", "-0.1"],
    ["--min-confidence", "1.5"], ["--min-confidence", "0,5"], ["--min-confidence", ""], ["--format", "xlsx"], ["--format", "parquet"],
    ["--out", "x.csv"], ["--format", "json", "--json"],
], ids=lambda args: " ".join(args))  # fmt: skip
def test_option_values_out_of_range_are_usage_errors(args: list[str], store: Store, capsys: pytest.CaptureFixture) -> None:
    code, _out, err = cli(report(store, *args), capsys)
    assert code == 2 and (args[0] in err or "--format" in err or "--out" in err or "min confidence" in err), err


# ---------------------------------------------------------------------------------------------
# 4. Where the report writes: missing folders are not made, the store is never overwritten, read-only is refused


@pytest.mark.hostile_input
@pytest.mark.parametrize("target", ["missing-folder", "deep-missing", "is-a-folder", "under-a-file", "the-store", "store-wal", "dot-dot"])
def test_out_paths_that_must_not_be_written_are_refused_before_any_query(
    target: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = Path(store.url.removeprefix("sqlite:///"))
    (tmp_path / "notes.txt").write_text("keep")
    out, expected_text = {
        "missing-folder": (tmp_path / "nowhere" / "x.csv", f"folder {tmp_path / 'nowhere'} does not exist"),
        "deep-missing": (tmp_path / "a" / "b" / "c" / "x.csv", "does not exist"),
        "is-a-folder": (tmp_path, "is a folder"),
        "under-a-file": (tmp_path / "notes.txt" / "x.csv", "notes.txt"),
        "the-store": (db, "is the results store itself"),
        "store-wal": (db.with_name(db.name + "-wal"), "is the results store itself"),
        "dot-dot": (tmp_path / "x" / ".." / ".." / db.parent.name / db.name, "is the results store itself"),
    }[target]
    before = db.read_bytes()
    code, _out, err = cli(report(store, "--format", "csv", "--out", str(out)), capsys)
    assert code == 2 and "--out" in err and expected_text in err, err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "a").exists() and (tmp_path / "notes.txt").read_text() == "keep"
    assert db.read_bytes() == before


@pytest.mark.hostile_input
@pytest.mark.parametrize("option", ["--annotate", "--plots"])
@pytest.mark.parametrize("shape", ["a-file", "under-a-file"])
def test_image_folders_that_are_files_are_refused(
    option: str, shape: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    folder = tmp_path / "notes.txt" if shape == "a-file" else tmp_path / "notes.txt" / "top"
    code, _out, err = cli(report(store, option, str(folder)), capsys)
    assert code == 2 and option in err and "is a file, not a folder" in err and str(tmp_path / "notes.txt") in err
    assert (tmp_path / "notes.txt").read_text() == "keep"


@pytest.mark.hostile_input
@pytest.mark.parametrize("what", ["--out new file", "--out existing file", "--annotate", "--plots", "--annotate subfolder"])
def test_read_only_destinations_are_a_clear_usage_error(what: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with read_only_folder(tmp_path / "ro", {"old.csv": b"kept,as,it,was\n"}) as folder:
        args = {
            "--out new file": ["--format", "csv", "--out", str(folder / "new.csv")],
            "--out existing file": ["--format", "csv", "--out", str(folder / "old.csv")],
            "--annotate": ["--annotate", str(folder)],
            "--plots": ["--plots", str(folder)],
            "--annotate subfolder": ["--annotate", str(folder / "top")],
        }[what]
        code, _out, err = cli(report(store, *args), capsys)
        assert code == 2 and what.split()[0] in err and "cannot be written" in err and str(folder) in err, err
        assert sorted(p.name for p in folder.iterdir()) == ["old.csv"] and (folder / "old.csv").read_bytes() == b"kept,as,it,was\n"


def fill(folder: Path) -> None:
    """Fill a file system to its last byte."""
    with (folder / "filler").open("wb", buffering=0) as handle:
        try:
            while handle.write(b"\xff" * 4096):
                pass
        except OSError:
            pass


@pytest.mark.injected_fault
@pytest.mark.parametrize("what", ["--out", "--annotate", "--plots"])
def test_a_full_disk_fails_the_report_clearly_and_keeps_the_previous_file(
    what: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        (disk / "rows.csv").write_text("the previous report\n")
        fill(disk)
        args = {"--out": ["--format", "csv", "--out", str(disk / "rows.csv")], "--annotate": ["--annotate", str(disk / "top")],
                "--plots": ["--plots", str(disk / "plots")]}[what]  # fmt: skip
        code, _out, err = cli(report(store, *args), capsys)
        assert code == 1 and what in err and "No space left on device" in err and str(disk) in err, err
        assert (disk / "rows.csv").read_text() == "the previous report\n"
        assert not [p for p in disk.iterdir() if p.name.endswith(".partial")]


@pytest.mark.injected_fault
def test_writing_the_rows_to_a_device_that_is_full_is_an_environment_failure(store: Store, capsys: pytest.CaptureFixture) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    code, _out, err = cli(report(store, "--format", "csv", "--out", "/dev/full"), capsys)
    assert code == 1 and "--out /dev/full" in err and "No space left on device" in err


@pytest.mark.hostile_input
def test_rows_to_an_existing_file_replace_it_whole(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rows.csv"
    out.write_text("x" * 100_000)  # longer than the new report: nothing of it may survive
    assert cli(report(store, "--format", "csv", "--out", str(out)), capsys)[0] == 0
    lines = out.read_text().splitlines()
    assert len(lines) == len(ALL_ROWS) + 1 and "x" * 50 not in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


# ---------------------------------------------------------------------------------------------
# 7. Bracketed text is shown as typed, never eaten as terminal markup

MARKUP_CLASSES = ["expected , got [...]", "[bold]hole[/bold]", "[/]", "[red]", "stain [x]", "[link=http://x]knot[/link]", "[[double]]"]


@pytest.fixture(scope="module")
def markup_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("markup_store")
    url = f"sqlite:///{root / 'results.db'}"
    engine = open_store(url)
    source = ensure_source(engine, "[cam]", "L[1]")
    version, run = model_and_run(engine, root, "[model]", images=1)
    found = [StoredDetection(name, 0.5 + k / 100, (1.0, 1.0, 9.0, 9.0)) for k, name in enumerate(MARKUP_CLASSES)]
    write_scored_batch(engine, run, version, [ScoredImage("f" * 64, str(root / "[frame].png"), 20, 20, datetime(2026, 11, 1, tzinfo=UTC),
                                                          source, found)])  # fmt: skip
    return url


@pytest.mark.hostile_input
@pytest.mark.parametrize("name", MARKUP_CLASSES)
def test_bracketed_classes_cameras_and_paths_print_literally(
    name: str, markup_store: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "_width", 400)  # wide enough that no cell is folded
    code, out, _err = cli(["report", "--db", markup_store, "--class", name], capsys)
    assert code == 0
    assert out.count(name) == 2, out  # in the per-class table and in the newest rows
    assert "[cam]" in out and "L[1]" in out and "[model]" in out and "[frame].png" in out


@pytest.mark.hostile_input
@pytest.mark.parametrize("value", ["[red]x[/red]", "expected , got [...]", "[/]"])
def test_bracketed_text_in_error_messages_is_shown_as_typed(value: str, store: Store, capsys: pytest.CaptureFixture) -> None:
    code, _out, err = cli(report(store, "--since", value), capsys)
    assert code == 2 and repr(value) in err


# ---------------------------------------------------------------------------------------------
# 8. Property-based fuzzing of every filter against the plain-Python oracle

REAL = {"line": sorted(set(LINES.values())), "camera": sorted(LINES), "class_name": ["hole", "stain", "knot"],
        "model": ["fabric-v1", "fabric-v2"]}  # fmt: skip
OFFSETS = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
NEAR = st.datetimes(min_value=datetime(2026, 10, 31), max_value=datetime(2026, 11, 3), timezones=OFFSETS)
ANYWHEN = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)


def text_filter(field: str) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(REAL[field]), ANY_TEXT, st.sampled_from([INJECTION, "%", "_", "\x00", "[/]"]))


FILTERS = st.fixed_dictionaries({
    "since": st.one_of(st.none(), NEAR, ANYWHEN), "until": st.one_of(st.none(), NEAR, ANYWHEN),
    **{field: text_filter(field) for field in REAL},
    "min_confidence": st.one_of(st.none(), st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True)),
})  # fmt: skip


def invalid(values: dict) -> bool:
    """Whether the oracle says the filter must be refused: a time out of range, unstorable text, a non-number confidence."""
    for name in ("since", "until"):
        when = values[name]
        if when is not None and not (EARLIEST <= when.astimezone(UTC) < LATEST):
            return True
    for field in REAL:
        text = values[field]
        if text is not None and ("\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)):
            return True
    confidence = values["min_confidence"]
    return confidence is not None and not math.isfinite(confidence)


def found(frame: object) -> list[tuple[str, str, str, float]]:
    return sorted((Path(r.image_path).stem, r.model, r.class_name, round(r.confidence, 6)) for r in frame.itertuples())


def oracle(flt: ReportFilter) -> list[tuple[str, str, str, float]]:
    return sorted((r.image, r.model, r.class_name, round(r.confidence, 6)) for r in expected(flt))


@pytest.mark.hostile_input(examples=200)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=FILTERS)
def test_any_filter_either_is_refused_clearly_or_returns_exactly_the_oracle(values: dict, store: Store) -> None:
    try:
        flt = ReportFilter(**values)
    except UsageError:
        assert invalid(values), values
        return
    assert not invalid(values), values
    want = oracle(flt)
    assert found(detections_frame(store.engine, flt)) == want
    summary = class_summary(store.engine, flt)
    assert dict(zip(summary["class_name"], summary["detections"])) == Counter(r[2] for r in want)
    assert int(confidence_histogram(store.engine, flt).to_numpy().sum()) == len(want)


def argv_of(values: dict) -> list[str]:
    names = {"since": "--since", "until": "--until", "line": "--line", "camera": "--camera", "class_name": "--class", "model": "--model",
             "min_confidence": "--min-confidence"}  # fmt: skip
    args = []
    for key, option in names.items():
        value = values[key]
        if value is not None:
            args += [option, value.isoformat() if isinstance(value, datetime) else repr(value) if isinstance(value, float) else value]
    return args


CLI_FILTERS = st.fixed_dictionaries({
    "since": st.one_of(st.none(), NEAR, ANYWHEN), "until": st.one_of(st.none(), NEAR),
    **{field: text_filter(field) for field in REAL}, "min_confidence": st.one_of(st.none(), st.floats(0, 1)),
})  # fmt: skip


@pytest.mark.hostile_input(examples=60)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=CLI_FILTERS)
def test_any_filter_typed_on_the_command_line_reports_exactly_the_oracle(
    values: dict, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_file = tmp_path / "rows.json"
    code, out, err = cli(report(store, *argv_of(values), "--format", "json", "--out", str(out_file), "--json"), capsys)
    if invalid(values):
        assert code == 2 and out == "" and err, err
        return
    assert code == 0, err
    want = oracle(ReportFilter(**values))
    rows = json.loads(out_file.read_text())
    assert sorted((Path(r["image_path"]).stem, r["model"], r["class_name"], round(r["confidence"], 6)) for r in rows) == want
    assert json.loads(out)["per_class"] == dict(Counter(r[2] for r in want))


@pytest.mark.hostile_input
def test_nasty_filters_on_postgresql_are_refused_or_match_nothing(postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    seeded = seed_store(postgres_url, tmp_path)
    for value, code in (("\x00", 2), (INJECTION, 0), ("[/]", 0), ("a" * 100_000, 0), ("bad\udcffbytes", 2), ("%", 0)):
        for option in ("--line", "--class"):
            assert cli(report(seeded, option, value, "--json"), capsys)[0] == code
    assert len(detections_frame(seeded.engine, ReportFilter())) == len(ALL_ROWS)
