"""Rendering the report queries: table formats, plots, annotated images, time parsing, and `inspect-core report`."""


import json
from datetime import datetime
from io import StringIO
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.reporting import annotate_top, parse_when, plot_report, write_table
from inspect_core.store import (
    ReportFilter,
    detections_frame,
)
from tests.store.seeded import INJECTION, UTC, Store, seed_store

runner = CliRunner()


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    return seed_store(store_url, tmp_path)


def test_every_table_format_round_trips(store: Store, tmp_path: Path) -> None:
    frame = detections_frame(store.engine, ReportFilter())
    read = {
        "csv": lambda p: pd.read_csv(p, parse_dates=["captured_at"]),
        "parquet": pd.read_parquet,
        "json": lambda p: pd.read_json(p, orient="records"),
        "html": lambda p: pd.read_html(StringIO(p.read_text()))[0],
    }
    for fmt, reader in read.items():
        path = tmp_path / "out" / f"rows.{fmt}"
        write_table(frame, fmt, path)
        back = reader(path)
        assert list(back.columns) == list(frame.columns), fmt
        assert back["class_name"].tolist() == frame["class_name"].tolist(), fmt
        assert np.allclose(back["confidence"], frame["confidence"]) and np.allclose(back["x2"], frame["x2"]), fmt
        if fmt != "html":
            assert (pd.to_datetime(back["captured_at"], utc=True) == frame["captured_at"]).all(), fmt
    with pytest.raises(ValueError, match="unknown table format 'xlsx'"):
        write_table(frame, "xlsx", tmp_path / "rows.xlsx")


def test_plots_are_valid_pngs_even_when_nothing_matches(store: Store, tmp_path: Path) -> None:
    for flt, folder in ((ReportFilter(), "all"), (ReportFilter(class_name="nothing"), "none")):
        paths = plot_report(store.engine, flt, tmp_path / folder)
        assert [p.name for p in paths] == ["defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png"]
        for path in paths:
            pixels = cv2.imread(str(path))
            assert pixels is not None and pixels.shape[0] > 100 and pixels.std() > 0


def test_annotate_draws_the_most_confident_images_and_reports_missing_files(store: Store, tmp_path: Path) -> None:
    result = annotate_top(store.engine, ReportFilter(), tmp_path / "top", top_n=3)
    assert result.missing == [str(store.frames / "gone.png")]  # 0.99, but its file is gone
    assert [p.name for p in result.written] == ["002_d_fabric-v2.png", "003_a_fabric-v1.png"]  # 0.95, then 0.9
    original = cv2.imread(str(store.frames / "d.png"))
    drawn = cv2.imread(str(result.written[0]))
    assert (drawn[35:75, 30] != original[35:75, 30]).any(axis=1).all()  # the knot box's left edge
    assert (drawn[15:45, 120] != original[15:45, 120]).any(axis=1).all()  # the hole box's left edge
    assert (drawn[85:, 190:] == original[85:, 190:]).all()  # far from boxes and labels: untouched

    only_stains = annotate_top(store.engine, ReportFilter(class_name="stain"), tmp_path / "stains", top_n=5)
    assert [p.name for p in only_stains.written] == ["001_e_fabric-v2.png", "002_a_fabric-v1.png"] and only_stains.missing == []
    a_original, a_drawn = cv2.imread(str(store.frames / "a.png")), cv2.imread(str(only_stains.written[1]))
    assert (a_drawn[25:55, 100] != a_original[25:55, 100]).any(axis=1).all()  # the stain box is drawn
    assert (a_drawn[15:35, 10] == a_original[15:35, 10]).all()  # the hole on the same image is filtered out
    assert annotate_top(store.engine, ReportFilter(class_name=INJECTION), tmp_path / "none", top_n=5).written == []


def test_parse_when_accepts_dates_times_and_spans() -> None:
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T08:30", now) == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert parse_when("2026-11-01T09:30+01:00", now) == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert parse_when("7d", now) == datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    assert parse_when("24h", now) == parse_when("1d", now)
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_when("yesterday", now)
    with pytest.raises(ValueError, match="timezone-aware"):
        ReportFilter(since=datetime(2026, 11, 1))


def test_report_cli_table_json_files_and_errors(store: Store, tmp_path: Path) -> None:
    help_text = runner.invoke(app, ["report", "--help"]).output
    options = "--since --until --line --camera --class --min-confidence --model --table-format --out --plots --annotate --top --limit"
    for option in [*options.split(), "--json", "Example: inspect-core report"]:
        assert option in help_text, option

    summary = runner.invoke(app, ["report", "--db", store.url, "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout) == {
        "filter": {}, "detections": 8, "per_class": {"hole": 5, "stain": 2, "knot": 1}, "rows": 8, "files": [], "missing_images": [],
    }  # fmt: skip

    out, plots, top = tmp_path / "rows.csv", tmp_path / "plots", tmp_path / "top"
    args = ["report", "--db", store.url, "--since", "2026-11-02", "--line", "line-B", "--table-format", "csv", "--out", str(out)]
    result = runner.invoke(app, [*args, "--plots", str(plots), "--annotate", str(top), "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == 2 and payload["per_class"] == {"hole": 1, "stain": 1}
    assert payload["filter"] == {"since": "2026-11-02T00:00:00+00:00", "line": "line-B"}
    assert payload["missing_images"] == [str(store.frames / "gone.png")]
    charts = [str(plots / n) for n in ("defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png")]
    assert payload["files"] == [str(out), *charts, str(top / "002_e_fabric-v2.png")]
    assert pd.read_csv(out)["class_name"].tolist() == ["hole", "stain"]

    to_stdout = runner.invoke(app, ["report", "--db", store.url, "--class", "knot", "--table-format", "json"])
    assert to_stdout.exit_code == 0 and [r["class_name"] for r in json.loads(to_stdout.stdout)] == ["knot"]

    table = runner.invoke(app, ["report", "--db", store.url, "--camera", "cam-1", "--limit", "3"])
    assert table.exit_code == 0 and "defects per class" in table.output and "newest 3" in table.output and "knot" in table.output

    injected = runner.invoke(app, ["report", "--db", store.url, "--class", INJECTION, "--json"])
    assert injected.exit_code == 0 and json.loads(injected.stdout)["rows"] == 0

    for bad, message in (
        (["--since", "last tuesday"], "--since: not a time: 'last tuesday'"),
        (["--until", "2026-13-01"], "--until: not a time"),
        (["--table-format", "xlsx"], "--table-format 'xlsx'"),
        (["--format", "xlsx"], "--format 'xlsx'"),  # the deprecated spelling still works, and errors name it as typed
        (["--table-format", "parquet"], "needs --out"),
        (["--out", str(tmp_path / "x.csv")], "add --table-format"),
    ):
        failed = runner.invoke(app, ["report", "--db", store.url, *bad])
        assert failed.exit_code == 2 and message in " ".join(failed.stderr.split()), (bad, failed.stderr)
    missing = runner.invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert missing.exit_code == 2 and "no results store at" in missing.stderr and not (tmp_path / "nope.db").exists()


