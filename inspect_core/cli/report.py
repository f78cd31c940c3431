"""`inspect-core report` (defects in the store: printed, as row files, or as one HTML page) and `report quarantine`.

``report`` is a command group that runs the report itself when no subcommand follows
(``invoke_without_command``), so ``inspect-core report --db ...`` works as it always did while
``inspect-core report quarantine`` lists the files put aside.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _fail, app, console, deprecated, errors, renamed
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default

MAX_ROWS = 2**31 - 1  # --limit and --top: past this SQLite cannot bind the number
FORMATS = ("table", "csv", "parquet", "json", "html")
DB_HELP = "Results store URL: sqlite:///results.db or postgresql+psycopg://user@host/db."
DbOption = Annotated[str | None, typer.Option(help=DB_HELP, show_default=recipe_default("store.url"))]
FORMAT_HELP = "table (printed); csv, parquet or json: the rows; html: the whole report as one page (to --out or stdout)."
OPERATING = "each run's operating thresholds"
LIMIT_DEFAULT = "all; the table 20, the page 500"
ConfigOption = Annotated[Path | None, typer.Option(help="Recipe YAML; its store: and report: (timezone, shifts, bucket) sections apply.")]

report_app = typer.Typer(no_args_is_help=False)  # its help is report_command's docstring
app.add_typer(report_app, name="report")


def _cell(value: object) -> Text:
    """A table cell taken literally: a class, camera or path such as ``[red]`` or ``got [...]`` is shown, not read as markup."""
    return Text("" if value is None else str(value))


def _print_report(per_class: list[dict[str, object]], newest: list[dict[str, object]], clock: Any) -> None:
    from inspect_core.reporting.html_report import local_minute

    table = Table("class", "defects", "mean confidence", "max confidence", title="defects per class", title_justify="left")
    for c in per_class:
        table.add_row(_cell(c["class_name"]), str(c["detections"]), f"{c['mean_confidence']:.3f}", f"{c['max_confidence']:.3f}")
    console.print(table)
    columns = (f"captured ({clock.name})", "camera", "line", "class", "conf", "box (px)", "model", "image")
    rows = Table(*columns, title=f"newest {len(newest)}", title_justify="left")
    for r in newest:
        box = f"{r['x1']:.0f},{r['y1']:.0f},{r['x2']:.0f},{r['y2']:.0f}"
        cells = (local_minute(r["captured_at"], clock), _cell(r["camera"]), _cell(r["line"]), _cell(r["class_name"]))
        rows.add_row(*cells, f"{r['confidence']:.2f}", box, _cell(r["model"]), _cell(r["image_path"]))
    console.print(rows)


def _check_outputs(db: str, out: Path | None, plots: Path | None, annotate: Path | None) -> None:
    """Every place the report writes, checked before the store is queried (so a typo costs no query)."""
    from inspect_core.reporting.outputs import check_output_file, check_output_folder
    from inspect_core.store.engine import parse_store_url, sqlite_file

    store = sqlite_file(parse_store_url(db))
    protected = [] if store is None else [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    if out is not None:
        check_output_file(out, "--out", protected)
    for option, folder in (("--plots", plots), ("--annotate", annotate)):
        if folder is not None:
            check_output_folder(folder, option)


def _store_and_clock(db: str | None, config: Path | None, sets: list[str] | None) -> tuple[str, Any]:
    """The store URL (``--db``, else the recipe's store.url, said on stderr) and the plant's clock (recipe ``report:``)."""
    from inspect_core.store.engine import parse_store_url, safe_url
    from inspect_core.store.plant_clock import clock_from_settings

    cfg = recipe(config, sets, {"store.url": db})
    if db is None:
        shown = safe_url(parse_store_url(cfg.store.url))
        errors.print(f"using the recipe's store {shown} (store.url; --db chooses another)", markup=False, highlight=False, soft_wrap=True)
    return cfg.store.url, clock_from_settings(cfg.report)


def _when(option: str, value: str | None, clock: Any) -> Any:
    """A --since/--until value; a date or time typed without an offset is the plant's local time (report.timezone)."""
    from datetime import datetime

    from inspect_core import reporting
    from inspect_core.errors import UsageError

    if value is None:
        return None
    try:
        parsed = reporting.parse_when(value)
    except ValueError as error:
        raise UsageError(f"--{option}: {error}") from None
    try:
        typed = datetime.fromisoformat(value.strip())
    except ValueError:
        return parsed  # a span back from now (7d): not local to anything
    return parsed if typed.utcoffset() is not None else typed.replace(tzinfo=clock.zone)


def _open(db: str) -> Any:
    from inspect_core.store import open_store

    try:
        return open_store(db, create=False)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; score images into it first (inspect-core score --db {db})") from None


@report_app.callback(invoke_without_command=True)
def report_command(
    ctx: typer.Context,
    db: DbOption = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    since: Annotated[str | None, typer.Option(help="From this capture time: 2026-11-01, 2026-11-01T08:00 (plant time), 7d.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this capture time (exclusive); same forms as --since.")] = None,
    line: Annotated[str | None, typer.Option(help="Production line.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id.")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="Defect class, e.g. hole.")] = None,
    min_confidence: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Lowest confidence kept.", show_default=OPERATING)] = None,
    model: Annotated[str | None, typer.Option(help="Model version name, as registered when scoring.")] = None,
    table_format: Annotated[str | None, typer.Option(help=FORMAT_HELP, show_default="table")] = None,
    out: Annotated[Path | None, typer.Option(help="File for the rows or the page (csv/parquet/json/html); parquet needs one.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, max=MAX_ROWS, help="Newest N rows only.", show_default=LIMIT_DEFAULT)] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for defects per day, defect rate per line and confidence PNGs.")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Folder for the --top images with boxes, classes and confidences drawn.")] = None,
    top: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="Most confident frames --annotate draws and the page shows.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON: defects per class, rows, files written.")] = False,
    old_format: Annotated[str | None, deprecated("--format", "--table-format")] = None,
) -> None:  # fmt: skip
    """Defects in the results store, filtered by time, line, camera, class, confidence and model.

    Prints a summary per class and the newest defects, or writes the rows as csv/parquet/json, or the
    whole report as one self-contained HTML page (headline numbers, defect rate per line and per class
    per local day or shift, confidence histogram, thumbnails of the most confident frames, sortable
    tables); --plots adds charts and --annotate draws the most confident defects on their images.
    Times are the plant's (recipe report.timezone, UTC by default); --db defaults to the recipe's store.

    Example: inspect-core report --db sqlite:///results.db --since 7d --line L2 --class hole
    --min-confidence 0.5 --table-format html --out report.html --set report.timezone=Europe/Istanbul
    """
    if ctx.invoked_subcommand is not None:  # `report [--db URL] quarantine ...`: the store options reach the subcommand
        ctx.obj = {"db": db, "config": config, "sets": sets}
        return
    import sys

    from inspect_core import reporting
    from inspect_core.errors import UsageError
    from inspect_core.reporting.outputs import write_failure, write_file
    from inspect_core.store import ReportFilter, StoreUnavailableError, class_summary, detections_frame

    option = "--format" if old_format is not None and table_format is None else "--table-format"
    try:
        fmt = renamed(table_format, old_format, "--table-format", "--format") or "table"
        if fmt not in FORMATS:
            raise UsageError(f"{option} {fmt!r}: use {', '.join(FORMATS)}")
        if fmt == "table" and out is not None:
            raise UsageError(f"--out writes the rows to a file: add --table-format ({', '.join(FORMATS[1:])})")
        if fmt != "table" and out is None and (fmt == "parquet" or as_json):
            raise UsageError(f"{option} {fmt}{' with --json' if as_json else ''} needs --out FILE")
        db, clock = _store_and_clock(db, config, sets)
        times = {name: _when(name, value, clock) for name, value in (("since", since), ("until", until))}
        flt = ReportFilter(**times, line=line, camera=camera, class_name=class_name, model=model, min_confidence=min_confidence)
        _check_outputs(db, out, plots, annotate)
        engine = _open(db)
        summary = class_summary(engine, flt)
        files, page = [], None
        if fmt == "html":
            from inspect_core.reporting.html_report import MAX_ROWS as PAGE_ROWS
            from inspect_core.reporting.html_report import build_html_report

            page = build_html_report(engine, flt, clock, top=top, max_rows=limit or PAGE_ROWS)
            if out is not None:
                write_file(out, "--out", lambda target: target.write_text(page.html, encoding="utf-8"))
                files.append(out)
            else:
                sys.stdout.write(page.html)
            rows = page.rows_shown
        else:
            frame = detections_frame(engine, flt, limit=limit or 20 if fmt == "table" else limit)
            rows = len(frame)
            if fmt != "table" and out is not None:
                write_file(out, "--out", lambda target: reporting.write_table(frame, fmt, target))
                files.append(out)
            elif fmt != "table":
                reporting.write_table(frame, fmt, sys.stdout)
        try:
            if plots is not None:
                files += reporting.plot_report(engine, flt, plots)
            drawn = reporting.annotate_top(engine, flt, annotate, top) if annotate is not None else reporting.AnnotationResult()
        except OSError as error:
            failed = Path(error.filename) if error.filename else (annotate or plots)
            drawing = annotate is not None and (failed == annotate or annotate in failed.parents)
            raise write_failure(failed, error, "--annotate" if drawing else "--plots") from None
        files += drawn.written
        missing = sorted(set(drawn.missing) | set(page.missing_images if page else []))
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        payload = {
            "filter": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(flt).items() if v is not None},
            "detections": int(summary["detections"].sum()),
            "per_class": {row.class_name: int(row.detections) for row in summary.itertuples()},
            "rows": rows,
            "files": [str(f) for f in files],
            "missing_images": missing,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    notes = console if fmt == "table" else errors  # stdout stays clean when the rows go there
    if fmt == "table":
        _print_report(summary.to_dict("records"), frame.to_dict("records"), clock)
    for path in files:
        notes.print(f"wrote {path}", highlight=False, markup=False)
    for path in missing:
        notes.print(f"image not found, not drawn: {path}", highlight=False, markup=False)


@report_app.command("quarantine")
def quarantine_command(
    ctx: typer.Context,
    db: DbOption = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    since: Annotated[str | None, typer.Option(help="Quarantined from: 2026-11-01 (plant time) or 7d/24h ago.")] = None,
    stage: Annotated[str | None, typer.Option(help="ingest or score (default: both).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, max=MAX_ROWS, help="Newest N files only (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the files as JSON.")] = False,
) -> None:
    """Files put aside by ingest or scoring (unreadable, empty, truncated, ...), newest first, with the reason and the stage.

    Example: inspect-core report quarantine --db sqlite:///results.db --since 7d
    """
    from inspect_core.store import StoreUnavailableError
    from inspect_core.store.quarantine_list import quarantined_files

    given = ctx.obj or {}
    try:
        url, clock = _store_and_clock(db or given.get("db"), config or given.get("config"), sets or given.get("sets"))
        frame, total = quarantined_files(_open(url), since=_when("since", since, clock), stage=stage, limit=limit)
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        files = [{"path": r.path, "stage": r.stage, "reason": r.reason, "quarantined_at": r.created_at.isoformat(), "run_id": r.run_id,
                  "sha256": r.sha256} for r in frame.itertuples()]  # fmt: skip
        typer.echo(json.dumps({"total": total, "shown": len(files), "files": files}, indent=2))
        return
    from inspect_core.reporting.html_report import local_minute

    shown = f"{total} quarantined file(s)" + (f", newest {len(frame)} shown" if len(frame) < total else "")
    table = Table(title=shown, title_justify="left")
    table.add_column(f"quarantined ({clock.name})", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    for name in ("reason", "file"):  # what a person acts on: wrapped, never cut off with an ellipsis
        table.add_column(name, overflow="fold")
    for r in frame.itertuples():
        table.add_row(local_minute(r.created_at, clock), _cell(r.stage), _cell(r.reason), _cell(r.path))
    console.print(table)
