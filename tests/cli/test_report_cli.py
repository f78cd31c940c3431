"""`inspect-core report` with a recipe (store, plant time zone, shifts), the html page, the renamed --table-format,
and `inspect-core report quarantine`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspect_core.cli import app, common
from inspect_core.store import quarantine
from tests.store.seeded import Store, seed_store

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("report_cli")
    seeded = seed_store(f"sqlite:///{root / 'results.db'}", root)
    quarantine(seeded.engine, "/plant/incoming/cam-1/0001.png", "empty file (0 bytes)", "ingest")
    quarantine(seeded.engine, "/plant/incoming/cam-2/0002.png", "not an image: cannot decode [JPEG]", "score")
    return seeded


def recipe_file(folder: Path, store: Store, **report: object) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({"store": {"url": store.url}, "report": report}))
    return path


def folded(text: str) -> str:
    return " ".join(text.split())


def test_the_recipe_gives_the_store_and_the_plants_time_zone(store: Store, tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, store, timezone="Asia/Kolkata")
    result = runner.invoke(app, ["report", "--config", str(recipe), "--since", "2026-11-01T15:00", "--json"])
    assert result.exit_code == 0, result.output
    assert f"using the recipe's store {store.url}" in folded(result.stderr)
    payload = json.loads(result.stdout)
    assert payload["filter"] == {"since": "2026-11-01T15:00:00+05:30"}  # a time typed without an offset is the plant's
    assert payload["per_class"] == {"hole": 3, "stain": 1, "knot": 1}  # from 09:30 UTC: b, c, d, e, gone (from 15:00 UTC: no b)
    table = runner.invoke(app, ["report", "--db", store.url, "--set", "report.timezone=Asia/Kolkata", "--limit", "1"])
    assert table.exit_code == 0 and "(Asia/Ko" in table.stdout and "16:30" in table.stdout, table.output  # 11:00 UTC (80 columns wrap)
    assert "using the recipe's store" not in table.stderr  # --db given: nothing to say


def test_html_page_with_shifts_from_set(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    shifts = "report.shifts=[{name: early, start: '06:00'}, {name: late, start: '18:00'}]"
    args = ["report", "--db", store.url, "--table-format", "html", "--out", str(out), "--set", "report.timezone=America/New_York",
            "--set", shifts, "--set", "report.bucket=shift", "--top", "2", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["files"] == [str(out)] and payload["rows"] == 8 and payload["missing_images"] == [str(store.frames / "gone.png")]
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "shifts early from 06:00, late from 18:00 (America/New_York)" in page
    assert page.count('class="thumb"') == 1  # top 2: "gone" (file missing) and d
    to_stdout = runner.invoke(app, ["report", "--db", store.url, "--table-format", "html", "--class", "knot"])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("<!DOCTYPE html>") and "wrote" not in to_stdout.stdout


def test_format_is_a_deprecated_spelling_of_table_format(store: Store, tmp_path: Path) -> None:
    old = runner.invoke(app, ["report", "--db", store.url, "--format", "csv"])
    assert old.exit_code == 0 and "warning: --format is deprecated, use --table-format" in folded(old.stderr)
    assert old.stdout.splitlines()[0].startswith("captured_at,camera,line,class_name")
    both = runner.invoke(app, ["report", "--db", store.url, "--format", "csv", "--table-format", "json"])
    assert both.exit_code == 2 and "--table-format and --format are the same option" in folded(both.stderr)
    help_text = runner.invoke(app, ["report", "--help"], terminal_width=200).stdout
    assert "--table-format" in help_text and "--format " not in help_text and "quarantine" in help_text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "report.timezone=Europe/Istambul",
            "report.timezone 'Europe/Istambul' is not an IANA time zone name (did you mean Europe/Istanbul",
        ),
        ("report.shifts=[{name: A, start: '6h'}]", "report.shifts[0].start '6h' (shift 'A') is not a local time of day HH:MM"),
        ("report.bucket=shift", "report.bucket is shift but report.shifts is empty"),
    ],
)
def test_a_bad_plant_clock_is_a_usage_error_naming_the_field(setting: str, message: str, store: Store) -> None:
    result = runner.invoke(app, ["report", "--db", store.url, "--set", setting])
    assert result.exit_code == 2 and message in folded(result.stderr), result.stderr


def test_quarantine_lists_the_files_put_aside_with_reasons(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = runner.invoke(app, ["report", "quarantine", "--db", store.url])
    assert narrow.exit_code == 0 and "…" not in narrow.stdout  # 80 columns: reasons and paths wrap, never cut off
    monkeypatch.setattr(common.console, "width", 200)
    listed = runner.invoke(app, ["report", "quarantine", "--db", store.url])
    assert listed.exit_code == 0, listed.output
    text = folded(listed.stdout)
    assert "2 quarantined file(s)" in text and "quarantined (UTC)" in text
    assert "not an image: cannot decode [JPEG]" in text and "/plant/incoming/cam-2/0002.png" in text  # brackets shown, not markup
    assert text.index("0002.png") < text.index("0001.png")  # newest first

    as_json = runner.invoke(app, ["report", "--db", store.url, "quarantine", "--stage", "ingest", "--json"])  # --db before it works too
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert (payload["total"], payload["shown"]) == (1, 1)
    assert {k: payload["files"][0][k] for k in ("path", "stage", "reason", "run_id")} == {
        "path": "/plant/incoming/cam-1/0001.png", "stage": "ingest", "reason": "empty file (0 bytes)", "run_id": None}  # fmt: skip
    assert payload["files"][0]["quarantined_at"].endswith("+00:00")

    newest = runner.invoke(app, ["report", "quarantine", "--db", store.url, "--limit", "1"])
    assert newest.exit_code == 0 and "2 quarantined file(s), newest 1 shown" in folded(newest.stdout) and "0001.png" not in newest.stdout
    later = runner.invoke(app, ["report", "quarantine", "--db", store.url, "--since", "2999-01-01", "--json"])
    assert json.loads(later.stdout)["total"] == 0


def test_quarantine_errors_are_usage_errors(store: Store, tmp_path: Path) -> None:
    stage = runner.invoke(app, ["report", "quarantine", "--db", store.url, "--stage", "train"])
    assert stage.exit_code == 2 and "stage 'train': use ingest or score" in folded(stage.stderr)
    missing = runner.invoke(app, ["report", "quarantine", "--db", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert missing.exit_code == 2 and "no results store at" in missing.stderr and not (tmp_path / "nope.db").exists()
    when = runner.invoke(app, ["report", "quarantine", "--db", store.url, "--since", "last week"])
    assert when.exit_code == 2 and "--since: not a time: 'last week'" in folded(when.stderr)
