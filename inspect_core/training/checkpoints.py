"""Checkpoint folders that a kill at any instant leaves usable, and a resume that falls back to the previous one.

Why: a run killed while ``latest/`` was being rewritten used to leave the new adapter beside the old
``trainer_state.pt`` (so ``--resume`` silently redid an epoch from the wrong weights and got another
result), or a half-written ``trainer_state.pt`` (a traceback, with no older checkpoint to fall back to).

A run folder holds ``latest/`` (the newest complete epoch), ``previous/`` (the one before: the fallback,
one adapter's worth of disk) and ``best/``. A checkpoint is written whole into ``<name>.partial/``,
every file and the folder fsynced, and only then renamed into place: ``latest`` -> ``previous``, then
``latest.partial`` -> ``latest`` (``best`` the same way through ``best.old``, which is then deleted).
``best/`` is swapped in *before* ``latest/``: a kill between the two leaves ``latest/`` one epoch
behind, and the resumed run redoes that epoch from its complete saved state (weights, optimizer,
scheduler, RNG), which is deterministic, so it ends exactly where an uninterrupted run would.

:func:`resume_point` reads ``latest/`` and, if that is missing or unreadable (truncated by a full disk,
a copy cut short), warns and uses ``previous/``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from inspect_core.errors import BadInputError, EnvironmentFailure

STATE_FILE = "trainer_state.pt"
LATEST, PREVIOUS, BEST = "latest", "previous", "best"
STAGING_SUFFIX = ".partial"
REPLACED_SUFFIX = ".old"
_STATE_KEYS = ("optimizer", "scheduler", "rng", "epoch", "history", "best_metric", "best_epoch", "stale_epochs")

log = logging.getLogger(__name__)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folders themselves, so a rename after this publishes complete data."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync(Path(root) / name)
        for name in dirs:
            _fsync(Path(root) / name)
    _fsync(folder)


def stage(output_dir: Path, name: str, write: Callable[[Path], None]) -> Path:
    """Write a checkpoint with ``write(folder)`` into ``<name>.partial/`` (a leftover one is discarded first), flushed to disk."""
    staged = output_dir / f"{name}{STAGING_SUFFIX}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    write(staged)
    fsync_tree(staged)
    return staged


def swap_in(staged: Path, target: Path, old: Path, keep_old: bool) -> None:
    """Put a complete ``staged`` folder at ``target``; the folder it replaces becomes ``old`` (kept, or deleted once done)."""
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        _fsync(target.parent)
    os.rename(staged, target)
    _fsync(target.parent)
    if not keep_old:
        shutil.rmtree(old, ignore_errors=True)


def publish(output_dir: Path, write: Callable[[Path], None], improved: bool) -> None:
    """Write an epoch's checkpoint (``write`` fills a folder, trainer state included) as ``latest/``, and as ``best/`` if it improved."""
    try:
        staged = stage(output_dir, LATEST, write)
        if improved:
            best_staged = stage(output_dir, BEST, lambda folder: shutil.copytree(staged, folder, dirs_exist_ok=True,
                                                                                ignore=shutil.ignore_patterns(STATE_FILE)))  # fmt: skip
            swap_in(best_staged, output_dir / BEST, output_dir / f"{BEST}{REPLACED_SUFFIX}", keep_old=False)
        swap_in(staged, output_dir / LATEST, output_dir / PREVIOUS, keep_old=True)
    except OSError as exc:  # a full disk, a vanished mount: the machine failed, and what was published before still stands
        reason = exc.strerror or str(exc)
        raise EnvironmentFailure(f"cannot write a checkpoint in {output_dir}: {reason}; the checkpoints written before are kept") from exc


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint read whole: the folder, the trainer state and the weights (adapter or full model)."""

    folder: Path
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    adapter: bool


def _read_checkpoint(folder: Path) -> ResumePoint:
    state = torch.load(folder / STATE_FILE, weights_only=False)  # our own file: it holds numpy and Python RNG states
    missing = [key for key in _STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in it")
    adapter = (folder / "adapter_model.safetensors").is_file()
    weights = load_file(folder / ("adapter_model.safetensors" if adapter else "model.safetensors"))
    return ResumePoint(folder, state, weights, adapter)


def leftovers_only(output_dir: Path) -> bool:
    """The folder holds no checkpoint yet, only what a run killed before its first one leaves (staging folders, ``best``)."""
    allowed = {BEST, f"{LATEST}{STAGING_SUFFIX}", f"{BEST}{STAGING_SUFFIX}", f"{BEST}{REPLACED_SUFFIX}"}
    return output_dir.is_dir() and all(entry.name in allowed for entry in output_dir.iterdir())


def clear_leftovers(output_dir: Path) -> None:
    for entry in output_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def resume_point(output_dir: Path) -> ResumePoint:
    """The newest checkpoint that reads whole: ``latest/``, else (with a warning naming what was wrong) ``previous/``.

    Also puts back ``best/`` if a kill hit between its two renames. Neither checkpoint readable is a
    :class:`BadInputError` naming both files and what was wrong with each.
    """
    best, replaced = output_dir / BEST, output_dir / f"{BEST}{REPLACED_SUFFIX}"
    if not best.exists() and replaced.is_dir():
        os.rename(replaced, best)
    problems = []
    for name in (LATEST, PREVIOUS):
        folder = output_dir / name
        try:
            point = _read_checkpoint(folder)
        except Exception as exc:  # anything unreadable, whatever the library raises, means: try the older one
            problems.append(f"{folder / STATE_FILE}: {type(exc).__name__}: {exc}")
            continue
        if problems:
            log.warning("warning: the latest checkpoint cannot be read (%s); resuming from %s (epoch %d) instead",
                        problems[0], folder, point.state["epoch"] + 1)  # fmt: skip
        return point
    raise BadInputError(f"--resume: no readable checkpoint in {output_dir}: " + "; ".join(problems))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a flushed temporary file, so a kill never leaves it half written."""
    temporary = path.with_name(f".{path.name}{STAGING_SUFFIX}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
