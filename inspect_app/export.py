"""Export: reviewed frames as a Pascal VOC batch under the retraining root, what ``train/nightly`` picks up.

The same calls as ``inspect-core review export`` (``reviewed_frames`` then ``write_voc_batch``: atomic, read
back with the VOC importer before it is put in place). The browser names only the batch (a plain folder
name such as ``2026-11-21``); the root is fixed when the app starts (``--labelled-root``), so a web page can
never write anywhere else on the machine.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from inspect_app.context import AppContext
from inspect_app.dashboard import ALL, Filters, clock_for, parse_time
from inspect_core.data.exporters import ExportResult, write_voc_batch
from inspect_core.errors import UsageError
from inspect_core.store.reviews import reviewed_frames

BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a folder name, never hidden (nightly skips those), no separator


@dataclass(frozen=True)
class ExportPlan:
    out: Path
    complete: int  # frames the batch will hold (every box decided, or marked clean)
    partial: int  # reviewed frames left out until their last boxes are decided
    command: str  # the command-line twin


def batch_folder(ctx: AppContext, name: str) -> Path:
    """``<labelled root>/<name>``, with ``name`` a plain folder name."""
    name = (name or "").strip()
    if not BATCH_NAME.match(name):
        raise UsageError(f"batch name {name!r}: use letters, digits, '.', '_' or '-' (not starting with a dot), e.g. 2026-11-21")
    return ctx.labelled_root / name


def plan(ctx: AppContext, name: str, since: str | None = None, until: str | None = None, model: str | None = None) -> ExportPlan:
    """What an export would write now: its folder, how many reviewed frames are complete and partial, the command-line twin
    (its times written with their offset: the command line reads a bare date as UTC, the app as plant time)."""
    out = batch_folder(ctx, name)
    window, model = _window(ctx, since, until), _model(model)
    statuses = Counter(f.status for f in reviewed_frames(ctx.engine, *window, model=model))
    given = (("since", window[0] and window[0].isoformat()), ("until", window[1] and window[1].isoformat()), ("model", model))
    flags = "".join(f" --{k} {shlex.quote(v)}" for k, v in given if v)
    url = ctx.engine.url.render_as_string(hide_password=True)
    return ExportPlan(out, statuses["complete"], statuses["partial"],
                      f"inspect-core review export --db {shlex.quote(url)} --out {shlex.quote(str(out))}{flags}")  # fmt: skip


def _window(ctx: AppContext, since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    clock = clock_for(ctx, Filters())
    return parse_time(since, clock, "since"), parse_time(until, clock, "until")


def _model(model: str | None) -> str | None:
    return None if not model or model == ALL else model


def export(ctx: AppContext, name: str, since: str | None = None, until: str | None = None, model: str | None = None,
           overwrite: bool = False) -> ExportResult:  # fmt: skip
    """Write the completely reviewed frames as the VOC batch ``<labelled root>/<name>``; an existing batch only with ``overwrite``."""
    out = batch_folder(ctx, name)
    if out.exists() and not overwrite:
        raise UsageError(f"batch {out} exists: choose another name, or tick 'replace' to write it again with the reviews as they are now")
    ctx.labelled_root.mkdir(parents=True, exist_ok=True)
    return write_voc_batch(reviewed_frames(ctx.engine, *_window(ctx, since, until), model=_model(model)), out, overwrite=overwrite)


def summary(result: ExportResult) -> str:
    """What an export wrote, in a sentence a reviewer reads."""
    if result.out is None:
        return "Nothing written: no completely reviewed frame matches (a frame counts when every box is decided or it is marked clean)."
    boxes = ", ".join(f"{name} {n}" for name, n in sorted(result.boxes.items())) or "none"
    left = f"; {len(result.skipped)} left out (listed below)" if result.skipped else ""
    return f"Wrote {result.frames} frame(s) to {result.out}: boxes {boxes}; {result.clean_frames} clean{left}. Nightly retraining takes it."
