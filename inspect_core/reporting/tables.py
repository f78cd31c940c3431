"""Detection rows written as files people open elsewhere: csv, parquet, json or html (the CLI checks where first: ``outputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import pandas as pd

from inspect_core.errors import UsageError

TABLE_FORMATS = ("csv", "parquet", "json", "html")


def write_table(frame: pd.DataFrame, fmt: str, out: Path | TextIO) -> None:
    """Write detection rows as csv, parquet (a file path only), json (records, ISO times) or html."""
    if fmt not in TABLE_FORMATS:
        raise UsageError(f"unknown table format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        if not isinstance(out, Path):
            raise UsageError("parquet is binary: give a file to write it to")
        frame.to_parquet(out, index=False, engine="pyarrow")
    elif fmt == "json":
        frame.to_json(out, orient="records", date_format="iso", date_unit="us", indent=1)
    else:
        frame.to_html(out, index=False)
