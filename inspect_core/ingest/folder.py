"""Folder ingestion: register the images a line-scan system or camera PC drops into a folder.

Files are polled, not watched with OS events: network shares (SMB/NFS) from camera PCs often send
none. A file is read only once its size and mtime have stayed the same for ``settle_seconds`` of the
watcher's own clock (a camera PC's clock may be off, so its mtime alone cannot say a copy is
finished). Images are deduplicated by content sha256 in the results store, so a file copied again
under another name is not registered twice. Files that cannot be used go to the quarantine table
with the reason; so do files whose name is not UTF-8 (the store keeps paths as text: they are
recorded under their ``\\xff``-escaped name, :func:`~inspect_core.data.importers.image_files.name_problem`).
Originals are left where they are unless an archive folder is configured.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inspect_core.config import IngestSection
from inspect_core.data.importers.image_files import IMAGE_SUFFIXES, ImageInfo, name_problem, probe_image, shown_path
from inspect_core.ingest.camera import frame_time
from inspect_core.store import Engine, ScoredImage, StoreUnavailableError, ensure_source, known_hashes, quarantine_once, register_frames

_DEFAULTS = IngestSection()  # the one home of the ingest defaults (config model)

log = logging.getLogger(__name__)

# Names copy tools, browsers and our camera writer give files that are still being written.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", "~")
# Label and metadata files that live beside images (LabelImg XML, YOLO TXT, JSON sidecars): not frames, not errors.
SIDECAR_SUFFIXES = (".xml", ".txt", ".json", ".yaml", ".yml", ".csv", ".log")
BATCH_SIZE = 256  # files per store transaction: a backlog of 100k files does not become one huge transaction


@dataclass
class IngestReport:
    """What one poll did; paths are the files as found in the watched folder."""

    registered: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # same content as an image already in the store
    quarantined: dict[str, str] = field(default_factory=dict)  # path -> reason
    waiting: list[str] = field(default_factory=list)  # still growing, or not yet settled
    archived: dict[str, str] = field(default_factory=dict)  # path -> where it was moved

    def absorb(self, later: IngestReport) -> None:
        """Add a later poll's outcome; what is waiting is what the later poll left waiting."""
        self.registered += later.registered
        self.duplicates += later.duplicates
        self.quarantined |= later.quarantined
        self.archived |= later.archived
        self.waiting = later.waiting

    def summary(self) -> str:
        return (
            f"{len(self.registered)} registered, {len(self.duplicates)} duplicate(s), {len(self.quarantined)} quarantined, "
            f"{len(self.waiting)} still settling"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatchTotals:
    """Counts over a whole watch (counts only: a watch may run for months)."""

    polls: int = 0
    registered: int = 0
    duplicates: int = 0
    quarantined: int = 0
    waiting: int = 0  # after the last poll
    failed_polls: int = 0  # store down or folder unreachable; their files are tried again

    def add(self, report: IngestReport) -> None:
        self.registered += len(report.registered)
        self.duplicates += len(report.duplicates)
        self.quarantined += len(report.quarantined)
        self.waiting = len(report.waiting)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # watcher clock when this size and mtime were first seen
    done: bool = False  # registered, duplicate or quarantined: not read again while unchanged


class FolderWatcher:
    """Poll ``folder`` and register its settled images as frames of ``camera`` over ``line``."""

    def __init__(
        self, folder: Path, engine: Engine, camera: str, line: str, settle_seconds: float = _DEFAULTS.settle_seconds,
        recursive: bool = _DEFAULTS.recursive,
        archive_dir: Path | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"folder to watch {folder} does not exist")
        if settle_seconds < 0:
            raise ValueError("settle_seconds must be >= 0")
        self.folder = Path(folder).resolve()
        self.archive_dir = Path(archive_dir).resolve() if archive_dir is not None else None
        if self.archive_dir == self.folder:
            raise ValueError("the archive folder must not be the watched folder itself")
        self.engine, self.settle_seconds, self.recursive, self._clock = engine, settle_seconds, recursive, clock
        self.source_id = ensure_source(engine, camera, line)
        self._seen: dict[Path, _Seen] = {}

    def poll_once(self, now: float | None = None) -> IngestReport:
        """One scan: settle what changed, ingest what settled; ``now`` (seconds) replaces the clock in tests."""
        now = self._clock() if now is None else now
        report = IngestReport()
        seen: dict[Path, _Seen] = {}
        ready: list[Path] = []
        for path, stat in self._scan():
            entry = self._seen.get(path)
            if entry is None or (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                entry = _Seen(stat.st_size, stat.st_mtime_ns, since=now)
            seen[path] = entry
            if entry.done:
                continue
            if now - entry.since < self.settle_seconds:
                report.waiting.append(shown_path(path))
            else:
                ready.append(path)
        self._seen = seen  # files that disappeared are forgotten: memory follows the folder, not its history
        for start in range(0, len(ready), BATCH_SIZE):
            self._ingest(ready[start : start + BATCH_SIZE], now, report)
        return report

    def catch_up(self, poll_seconds: float) -> IngestReport:
        """Ingest what is in the folder now, polling until it has settled; files arriving meanwhile do not keep it going."""
        report = self.poll_once()
        first = set(report.waiting)
        while first & set(report.waiting):
            time.sleep(poll_seconds)
            report.absorb(self.poll_once())
        return report

    def watch(
        self, poll_seconds: float, stop: Callable[[], bool] | None = None, max_polls: int | None = None,
        on_poll: Callable[[IngestReport], None] | None = None,
    ) -> WatchTotals:  # fmt: skip
        """Poll every ``poll_seconds`` until ``stop()`` is true, ``max_polls`` polls ran or Ctrl-C; the totals.

        A store that stays down through its retries, or a share that is unmounted, is logged and the
        poll's files are tried again at the next poll: a database restart does not stop ingestion.
        """
        totals = WatchTotals()
        try:
            while True:
                try:
                    report = self.poll_once()
                except (StoreUnavailableError, OSError) as error:
                    log.error("watching %s: %s; trying again at the next poll", self.folder, error)
                    totals.failed_polls += 1
                else:
                    totals.add(report)
                    if on_poll is not None:
                        on_poll(report)
                totals.polls += 1
                if (max_polls is not None and totals.polls >= max_polls) or (stop is not None and stop()):
                    return totals
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            return totals

    def _scan(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Candidate files with their stat; hidden, temporary and archived files are not candidates."""
        folders = [self.folder]
        while folders:
            folder = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as error:
                if folder == self.folder:  # the share is gone: fail the poll, remember what was seen
                    raise
                if not isinstance(error, FileNotFoundError):  # a subfolder removed while scanning is no news
                    log.warning("cannot scan %s: %s", folder, error)
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name.lower().endswith(TEMP_SUFFIXES + SIDECAR_SUFFIXES):
                    continue
                path = Path(entry.path)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if self.recursive and path != self.archive_dir:
                            folders.append(path)
                    elif entry.is_file():
                        yield path, entry.stat()
                except FileNotFoundError:
                    continue

    def _ingest(self, paths: list[Path], now: float, report: IngestReport) -> None:
        """Read settled files; quarantine the unusable, register the new, count the known; then archive."""
        fresh: dict[str, tuple[Path, ImageInfo]] = {}
        copies: list[Path] = []
        for path in paths:
            if unusable := name_problem(path):
                outcome: ImageInfo | str = unusable
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                outcome = probe_image(path)
            else:
                outcome = f"not an image file (suffix {path.suffix or 'none'!r}; images are {', '.join(IMAGE_SUFFIXES)})"
            if not self._unchanged_since_scan(path, now, report):
                continue
            if isinstance(outcome, str):
                self._quarantine(path, outcome, report)
            elif outcome.sha256 in fresh:
                copies.append(path)
            else:
                fresh[outcome.sha256] = (path, outcome)
        known = known_hashes(self.engine, fresh)
        copies += [path for sha, (path, _) in fresh.items() if sha in known]
        new = {sha: entry for sha, entry in fresh.items() if sha not in known}
        targets = {path: self._archive_target(path) for path, _ in new.values()}
        register_frames(
            self.engine,
            [ScoredImage(sha, str(targets[path] or path), info.width, info.height, self._captured_at(path), self.source_id)
             for sha, (path, info) in new.items()],
        )  # fmt: skip
        for path, _ in new.values():
            report.registered.append(str(path))
            self._finish(path, targets[path], report)
        for path in copies:
            report.duplicates.append(str(path))
            self._finish(path, self._archive_target(path), report)

    def _unchanged_since_scan(self, path: Path, now: float, report: IngestReport) -> bool:
        """False when the file was written to (back to settling) or removed (forgotten) while it was read."""
        entry = self._seen[path]
        try:
            stat = path.stat()
        except FileNotFoundError:
            del self._seen[path]
            return False
        if (stat.st_size, stat.st_mtime_ns) == (entry.size, entry.mtime_ns):
            return True
        self._seen[path] = _Seen(stat.st_size, stat.st_mtime_ns, since=now)
        report.waiting.append(shown_path(path))
        return False

    def _captured_at(self, path: Path) -> datetime:
        """The time in a camera writer's file name, else the file's mtime (UTC)."""
        return frame_time(path) or datetime.fromtimestamp(self._seen[path].mtime_ns / 1e9, timezone.utc)

    def _quarantine(self, path: Path, reason: str, report: IngestReport) -> None:
        """Record the file once per content (a restarted watcher finds it again), then archive it if so configured."""
        target = self._archive_target(path, "quarantine")
        stored = shown_path(target or path)
        try:
            sha256: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            sha256 = None
        if quarantine_once(self.engine, stored, reason, stage="ingest", sha256=sha256):
            log.warning("quarantined %s: %s", shown_path(path), reason)
        report.quarantined[shown_path(path)] = reason
        self._finish(path, target, report)

    def _archive_target(self, path: Path, *subfolder: str) -> Path | None:
        """Where ``path`` goes in the archive (same relative path, never over an existing file); None: it stays."""
        if self.archive_dir is None:
            return None
        target = self.archive_dir.joinpath(*subfolder, path.relative_to(self.folder))
        counter = 1
        while target.exists():
            target = target.with_name(f"{path.stem}-{counter}{path.suffix}")
            counter += 1
        return target

    def _finish(self, path: Path, target: Path | None, report: IngestReport) -> None:
        """Mark the file handled; move it only after the store has it, so a crash never loses a file."""
        self._seen[path].done = True
        if target is None:
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
        except OSError as error:  # the file stays (done, so not read again); the others are still archived
            log.error("could not archive %s to %s: %s", shown_path(path), shown_path(target), error)
            return
        report.archived[shown_path(path)] = shown_path(target)
        del self._seen[path]
