"""`inspect-core report`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _fail, app, console, errors

MAX_ROWS = 2**31 - 1  # --limit and --top: past this SQLite cannot bind the number


def _cell(value: object) -> Text:
    """A table cell taken literally: a class, camera or path such as ``[red]`` or ``got [...]`` is shown, not read as markup."""
    return Text("" if value is None else str(value))


def _print_report(per_class: list[dict[str, object]], newest: list[dict[str, object]]) -> None:
    table = Table("class", "defects", "mean confidence", "max confidence", title="defects per class", title_justify="left")
    for c in per_class:
        table.add_row(_cell(c["class_name"]), str(c["detections"]), f"{c['mean_confidence']:.3f}", f"{c['max_confidence']:.3f}")
    console.print(table)
    columns = ("captured (UTC)", "camera", "line", "class", "conf", "box (px)", "model", "image")
    rows = Table(*columns, title=f"newest {len(newest)}", title_justify="left")
    for r in newest:
        box = f"{r['x1']:.0f},{r['y1']:.0f},{r['x2']:.0f},{r['y2']:.0f}"
        cells = (f"{r['captured_at']:%Y-%m-%d %H:%M:%S}", _cell(r["camera"]), _cell(r["line"]), _cell(r["class_name"]))
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


@app.command("report")
def report_command(
    db: Annotated[str, typer.Option(help="Results store URL: sqlite:///results.db or postgresql+psycopg://user@host/db.")],
    since: Annotated[str | None, typer.Option(help="From this capture time: 2026-11-01, 2026-11-01T08:00 (UTC) or 7d/24h ago.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this capture time (exclusive); same forms as --since.")] = None,
    line: Annotated[str | None, typer.Option(help="Production line.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id.")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="Defect class, e.g. hole.")] = None,
    min_confidence: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Lowest confidence kept (inclusive).")] = None,
    model: Annotated[str | None, typer.Option(help="Model version name, as registered when scoring.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table (printed), or csv, parquet, json, html rows (to --out or stdout).")] = "table",
    out: Annotated[Path | None, typer.Option(help="File for the rows (csv/parquet/json/html); parquet needs one.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, max=MAX_ROWS, help="Newest N rows only (default: all; the table shows 20).")] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for defects per day, defect rate per line and confidence PNGs.")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Folder for the --top images with boxes, classes and confidences drawn.")] = None,
    top: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="How many images --annotate draws (most confident defect first).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON: defects per class, rows, files written.")] = False,
) -> None:
    """Defects in the results store, filtered by time, line, camera, class, confidence and model.

    Prints a summary per class and the newest defects, or writes the rows as csv/parquet/json/html;
    --plots adds charts and --annotate draws the most confident defects on their images. Times are UTC.

    Example: inspect-core report --db sqlite:///results.db --since 7d --line L2 --class hole
    --min-confidence 0.5 --format csv --out holes.csv --plots report/ --annotate report/top
    """
    import sys

    from inspect_core import reporting
    from inspect_core.errors import UsageError
    from inspect_core.reporting.outputs import write_failure, write_file
    from inspect_core.store import ReportFilter, StoreUnavailableError, class_summary, detections_frame, open_store

    try:
        times = {}
        for option, value in (("since", since), ("until", until)):
            try:
                times[option] = reporting.parse_when(value) if value is not None else None
            except ValueError as error:
                raise UsageError(f"--{option}: {error}") from None
        flt = ReportFilter(**times, line=line, camera=camera, class_name=class_name, model=model, min_confidence=min_confidence)
        if fmt != "table" and fmt not in reporting.TABLE_FORMATS:
            raise UsageError(f"--format {fmt!r}: use table, {', '.join(reporting.TABLE_FORMATS)}")
        if fmt == "table" and out is not None:
            raise UsageError(f"--out writes the rows to a file: add --format ({', '.join(reporting.TABLE_FORMATS)})")
        if fmt != "table" and out is None and (fmt == "parquet" or as_json):
            raise UsageError(f"--format {fmt}{' with --json' if as_json else ''} needs --out FILE")
        _check_outputs(db, out, plots, annotate)
        try:
            engine = open_store(db, create=False)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}; score images into it first (inspect-core score --db {db})") from None
        summary = class_summary(engine, flt)
        frame = detections_frame(engine, flt, limit=limit or 20 if fmt == "table" else limit)
        files = []
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
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        payload = {
            "filter": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(flt).items() if v is not None},
            "detections": int(summary["detections"].sum()),
            "per_class": {row.class_name: int(row.detections) for row in summary.itertuples()},
            "rows": len(frame),
            "files": [str(f) for f in files],
            "missing_images": drawn.missing,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    notes = console if fmt == "table" else errors  # stdout stays clean when the rows go there
    if fmt == "table":
        _print_report(summary.to_dict("records"), frame.to_dict("records"))
    for path in files:
        notes.print(f"wrote {path}", highlight=False, markup=False)
    for path in drawn.missing:
        notes.print(f"image not found, not annotated: {path}", highlight=False, markup=False)
