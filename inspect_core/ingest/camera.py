"""Camera ingestion: sample frames from a USB camera, an RTSP/HTTP stream or a video file into a folder.

Frames not worth scoring (black, frozen, blurred) are dropped at the camera, before they cost a
database row or a model call. Kept frames are written to a hidden temp file and renamed into place,
so a folder watcher never reads half a frame; their names carry camera, line and UTC capture time
(``cam-3_L2_20261122T044543_786000Z.png``), which :mod:`inspect_core.ingest.folder` reads back.

A live source that stops delivering frames is reopened with exponential backoff (logged), so a
camera that reboots or a network that blips costs only the frames it did not send: every frame
already captured is on disk before the next one is read. A video file that ends just ends.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from inspect_core.config import IngestSection
from inspect_core.errors import UsageError

_DEFAULTS = IngestSection()  # the one home of the ingest defaults (config model); restated nowhere here

log = logging.getLogger(__name__)

FRAME_TIME_FORMAT = "%Y%m%dT%H%M%S_%fZ"
_FRAME_TIME = re.compile(r"_(\d{8}T\d{6}_\d{6})Z$")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_BACKOFF_DOUBLINGS = 30  # 2**30 x the initial delay is beyond any sensible cap; keeps the float finite


class VideoSource(Protocol):
    """The part of ``cv2.VideoCapture`` the capture loop uses (tests inject scripted sources)."""

    def isOpened(self) -> bool: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def parse_source(text: str) -> int | str:
    """``"0"`` -> USB camera index 0; anything else is a stream URL or a video file path."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def is_live(source: int | str) -> bool:
    """Devices and network streams are reconnected when they drop; a video file simply ends."""
    if isinstance(source, int) or source.startswith("/dev/"):
        return True
    scheme = urlsplit(source).scheme.lower()
    return len(scheme) > 1 and scheme != "file"  # one letter is a Windows drive: C:\clips\loom.mp4


def shown_source(source: int | str) -> str:
    """The source for logs and reports: a stream URL's password never ends up in a log file."""
    if isinstance(source, int):
        return f"camera {source}"
    parts = urlsplit(source)
    if parts.password is None:
        return source
    return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")).geturl()


def frame_file_name(camera_id: str, line_id: str, captured_at: datetime, suffix: str) -> str:
    return f"{camera_id}_{line_id}_{captured_at.astimezone(timezone.utc).strftime(FRAME_TIME_FORMAT)}.{suffix}"


def frame_time(path: Path) -> datetime | None:
    """The UTC capture time in a frame file's name, or None when the name carries none."""
    match = _FRAME_TIME.search(path.stem)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1) + "Z", FRAME_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:  # digits in the right places but no real date (month 13)
        return None


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True, slots=True)
class FrameQuality:
    """Thresholds below which a frame is not kept; a threshold of 0 switches its check off.

    black: mean grey level (0-255), a covered lens or a dead sensor. frozen: mean absolute grey-level
    difference to the previous kept frame, a stream that repeats its last image (a live loom never
    does). blurred: variance of the Laplacian, a camera out of focus or shaken.
    """

    black_below: float = _DEFAULTS.black_below
    frozen_below: float = _DEFAULTS.frozen_below
    blur_below: float = _DEFAULTS.blur_below

    def reject_reason(self, frame: np.ndarray, previous: np.ndarray | None = None) -> str | None:
        """``"black"``, ``"frozen"`` or ``"blurred"`` (checked in that order), or None to keep the frame."""
        grey = _grey(frame)
        if float(grey.mean()) < self.black_below:
            return "black"
        if previous is not None and previous.shape == frame.shape and float(cv2.absdiff(grey, _grey(previous)).mean()) < self.frozen_below:
            return "frozen"
        if float(cv2.Laplacian(grey, cv2.CV_64F).var()) < self.blur_below:
            return "blurred"
        return None


@dataclass
class CaptureReport:
    frames_read: int = 0
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0  # reopen attempts, successful or not
    end_reason: str = ""
    failed: bool = False  # ended because the source failed (gave up reconnecting, a video file with no frame), not as asked
    last_frame: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sampler:
    """Which grabbed frames are candidates: every N-th, or the first at least S seconds after the last."""

    every_frames: int
    every_seconds: float | None
    next_due: float = -math.inf

    def due(self, index: int, seconds: float) -> bool:
        if self.every_seconds is None:
            return index % self.every_frames == 0
        if seconds < self.next_due - 1e-6:  # tolerance: 0.6 - 0.3 is 0.29999999999999993 in floats
            return False
        self.next_due = seconds + self.every_seconds
        return True


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CameraCapture:
    """Sample, check and write frames of one camera over one line until the source ends or gives up."""

    def __init__(
        self, source: int | str, out_dir: Path, camera_id: str, line_id: str, *, every_frames: int | None = None,
        every_seconds: float | None = None, quality: FrameQuality | None = None,
        image_format: Literal["png", "jpg"] = _DEFAULTS.image_format,
        backoff_initial_s: float = _DEFAULTS.backoff_initial_seconds, backoff_max_s: float = _DEFAULTS.backoff_max_seconds,
        max_reconnects: int | None = None,
        open_capture: Callable[[int | str], VideoSource] = cv2.VideoCapture, clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        for name, value in (("camera id", camera_id), ("line id", line_id)):
            if not _ID.fullmatch(value):
                raise UsageError(f"{name} {value!r} goes into file names: use letters, digits, '.', '_' and '-' only")
        if every_frames is not None and every_seconds is not None:
            raise UsageError("sample every N frames or every S seconds, not both")
        if (every_frames is not None and every_frames < 1) or (every_seconds is not None and every_seconds <= 0):
            raise UsageError("every_frames must be >= 1 and every_seconds > 0")
        if image_format not in ("png", "jpg"):
            raise UsageError(f"image format {image_format!r}: use png or jpg")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise UsageError("reconnect backoff: need 0 < initial <= max seconds")
        if isinstance(source, str) and not is_live(source) and not Path(source).is_file():
            raise FileNotFoundError(f"video file {source} not found (a camera is a device index such as 0, or an rtsp:// URL)")
        self.source, self.out_dir, self.camera_id, self.line_id = source, Path(out_dir), camera_id, line_id
        self.live = is_live(source)
        self.every_frames, self.every_seconds = every_frames or 1, every_seconds
        self.quality = quality or FrameQuality()
        self.image_format = image_format
        self.backoff_initial_s, self.backoff_max_s, self.max_reconnects = backoff_initial_s, backoff_max_s, max_reconnects
        self._open, self._clock, self._sleep = open_capture, clock, sleep
        self._last_time: datetime | None = None

    def run(
        self, max_frames: int | None = None, stop: Callable[[], bool] | None = None, progress: Callable[[CaptureReport], None] | None = None
    ) -> CaptureReport:
        """Capture until ``max_frames`` are written, ``stop()`` says so, the file ends, reconnecting gives up or Ctrl-C.

        ``progress`` is called with the running report after every written frame (status displays).
        """
        report = CaptureReport()
        self._check_out_dir()
        self._remove_stale_temp_files()
        sampler = _Sampler(self.every_frames, self.every_seconds)
        previous: np.ndarray | None = None
        failures = 0  # reopen attempts since the last frame arrived
        shown = shown_source(self.source)
        capture = self._open(self.source)
        fps = self._fps(capture)
        try:
            while True:
                if max_frames is not None and report.written >= max_frames:
                    report.end_reason = "max frames reached"
                    break
                if stop is not None and stop():
                    report.end_reason = "stopped"
                    break
                if not (capture.isOpened() and capture.grab()):
                    if not self.live:
                        report.end_reason = "end of stream" if report.frames_read else f"could not read video file {self.source}"
                        report.failed = not report.frames_read
                        break
                    if self.max_reconnects is not None and failures >= self.max_reconnects:
                        report.end_reason = f"gave up: no frames from {shown} after {failures} reconnect attempt(s)"
                        report.failed = True
                        log.error("camera %s: %s", self.camera_id, report.end_reason)
                        break
                    delay = min(self.backoff_initial_s * 2 ** min(failures, MAX_BACKOFF_DOUBLINGS), self.backoff_max_s)
                    failures += 1
                    report.reconnects += 1
                    log.warning("camera %s: %s delivers no frames; reconnect attempt %d in %.1f s", self.camera_id, shown, failures, delay)
                    capture.release()
                    self._sleep(delay)
                    capture = self._open(self.source)
                    continue
                if failures:
                    log.info("camera %s: %s is back after %d reconnect attempt(s)", self.camera_id, shown, failures)
                    failures = 0
                index, captured_at = report.frames_read, self._clock()
                report.frames_read += 1
                if not sampler.due(index, captured_at.timestamp() if self.live else index / fps):
                    continue
                ok, frame = capture.retrieve()
                reason = "undecodable" if not ok or frame is None else self.quality.reject_reason(frame, previous)
                if reason is not None:
                    report.rejected[reason] = report.rejected.get(reason, 0) + 1
                    continue
                report.last_frame = str(self._write(frame, captured_at))
                report.written += 1
                previous = frame
                if progress is not None:
                    progress(report)
        except KeyboardInterrupt:
            report.end_reason = "interrupted"
        finally:
            capture.release()
        return report

    def _fps(self, capture: VideoSource) -> float:
        """A video file's frame rate: its 'seconds' are video time, not the (much faster) reading time."""
        if self.live:
            return 0.0
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
        return fps if fps > 0 and math.isfinite(fps) else 25.0

    def _write(self, frame: np.ndarray, captured_at: datetime) -> Path:
        """Encode, write to a hidden temp file, fsync, rename: the frame appears whole or not at all."""
        if self._last_time is not None and captured_at <= self._last_time:
            captured_at = self._last_time + timedelta(microseconds=1)  # names stay unique and in capture order
        self._last_time = captured_at
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if self.image_format == "jpg" else []
        ok, data = cv2.imencode(f".{self.image_format}", frame, params)
        if not ok:
            raise OSError(f"camera {self.camera_id}: OpenCV could not encode a {frame.shape} frame as {self.image_format}")
        final = self.out_dir / frame_file_name(self.camera_id, self.line_id, captured_at, self.image_format)
        temp = final.with_name(f".{final.name}.tmp")
        try:
            with temp.open("wb") as handle:
                handle.write(data.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return final

    def _check_out_dir(self) -> None:
        """Create the frames folder and prove it takes a file, before the camera is opened.

        A folder that is a file, read-only or on a read-only mount is a wrong option (UsageError),
        said at once, not after the first good frame was grabbed and lost.
        """
        probe = self.out_dir / f".{self.camera_id}_{self.line_id}_write-check.tmp"  # matches the stale temp pattern
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"frames folder {self.out_dir}: it (or a folder above it) is a file, not a folder") from None
        except OSError as error:
            raise UsageError(f"frames folder {self.out_dir} is not writable: {error.strerror or error}") from None

    def _remove_stale_temp_files(self) -> None:
        """Half-written frames of a run that was killed mid-write: never renamed, so never seen by a watcher."""
        for temp in self.out_dir.glob(f".{self.camera_id}_{self.line_id}_*.tmp"):
            temp.unlink(missing_ok=True)
