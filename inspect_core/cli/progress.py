"""Progress bars for the pipeline's stages: the CLI's ``StageHooks``.

The stages (``inspect_core.pipeline``) report through hooks; this module turns them into rich bars on
stderr (stdout stays clean for ``--json``), one bar per stage, replaced when the next stage starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import TaskID

from inspect_core.cli.common import _progress
from inspect_core.data.importers import ImportResult
from inspect_core.pipeline import StageHooks


@contextmanager
def stage_progress(announce: bool = False) -> Iterator[StageHooks]:
    """Hooks that draw the running stage's bar; ``announce`` also prints a line as each stage starts (the demo)."""
    with _progress() as progress:
        current: dict[str, TaskID | None] = {"bar": None}
        epoch = {"n": 1}

        def new_bar(description: str, total: int | None = None) -> TaskID:
            if current["bar"] is not None:
                progress.remove_task(current["bar"])
            current["bar"] = progress.add_task(description, total=total)
            return current["bar"]

        def stage(name: str) -> None:
            if announce:
                progress.console.print(f"[bold]{escape(name)}[/]", highlight=False)
            new_bar(name)
            epoch["n"] = 1

        def imported(result: ImportResult) -> None:  # the bar's total is known before the first image is written
            progress.update(current["bar"], description="writing images", total=len(result.images), completed=0)

        def build_progress(done: int, total: int) -> None:
            progress.update(current["bar"], description="writing images", completed=done, total=total)

        def train_step(done: int, total: int) -> None:
            progress.update(current["bar"], completed=done, total=total, description=f"epoch {epoch['n']}")

        def train_epoch(entry: dict) -> None:
            scores = " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch" and isinstance(v, float))
            progress.console.print(f"epoch {entry['epoch']}: {scores}", markup=False, highlight=False)
            epoch["n"] = entry["epoch"] + 1

        def score_total(total: int) -> None:
            progress.update(current["bar"], description="scoring", total=total, completed=0)

        def score_progress(n: int) -> None:
            progress.advance(current["bar"], n)

        yield StageHooks(stage=stage, imported=imported, build_progress=build_progress, train_step=train_step, train_epoch=train_epoch,
                         score_total=score_total, score_progress=score_progress)  # fmt: skip
