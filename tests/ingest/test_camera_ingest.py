import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.ingest.camera import CameraCapture, FrameQuality, frame_time, is_live, parse_source, shown_source

NAME = re.compile(r"cam-3_L2_\d{8}T\d{6}_\d{6}Z\.png")
T0 = datetime(2026, 11, 22, 4, 45, 43, 786000, tzinfo=timezone.utc)


def textured(seed: int) -> np.ndarray:
    """Fabric-like: a weave of stripes under sensor noise, sharp enough for any blur threshold."""
    rng = np.random.default_rng(seed)
    weave = (np.indices((48, 64)).sum(axis=0) % 6 < 3) * 40
    return (rng.integers(60, 120, size=(48, 64, 3)) + weave[..., None]).astype(np.uint8)


def blurred(seed: int) -> np.ndarray:
    return cv2.GaussianBlur(textured(seed), (0, 0), 6)


# normal, normal, black, repeat of the last kept, blurred, normal, repeat, normal, black, normal
CLIP = [textured(0), textured(1), np.zeros((48, 64, 3), np.uint8), textured(1), blurred(2), textured(3), textured(3), textured(4)]
CLIP += [np.zeros((48, 64, 3), np.uint8), textured(5)]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "loom.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for frame in CLIP:
        writer.write(frame)
    writer.release()
    return path


class Clock:
    """A fake UTC clock: 100 ms per reading, like a 10 fps camera."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=100)
        return self.now


class ScriptedCamera:
    """A live source that delivers ``frames`` and then stops (a dropped stream), or never opens."""

    def __init__(self, frames: list[np.ndarray] | None) -> None:
        self.frames, self.released = list(frames or []), False
        self.opened = frames is not None
        self.current: np.ndarray | None = None

    def isOpened(self) -> bool:
        return self.opened

    def grab(self) -> bool:
        if not self.frames:
            return False
        self.current = self.frames.pop(0)
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return True, self.current

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def scripted(*cameras: ScriptedCamera) -> tuple[list[int | str], object]:
    """An ``open_capture`` that hands out the cameras in order, recording what it was asked to open."""
    opened: list[int | str] = []
    queue = list(cameras)

    def open_capture(source: int | str) -> ScriptedCamera:
        opened.append(source)
        return queue.pop(0) if queue else ScriptedCamera(None)

    return opened, open_capture


def written_frames(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def test_sources_parse_into_device_indexes_urls_and_files() -> None:
    assert parse_source("0") == 0 and parse_source(" 2 ") == 2
    assert parse_source("rtsp://10.0.3.21/stream1") == "rtsp://10.0.3.21/stream1" and parse_source("loom.mp4") == "loom.mp4"
    assert is_live(0) and is_live("rtsp://10.0.3.21/s") and is_live("http://cam/mjpg") and is_live("/dev/video0")
    assert shown_source("rtsp://admin:s3cret@10.0.3.21:554/stream1") == "rtsp://admin:***@10.0.3.21:554/stream1"
    assert shown_source("rtsp://10.0.3.21/s") == "rtsp://10.0.3.21/s" and shown_source(1) == "camera 1"
    assert not is_live("clips/loom.mp4") and not is_live("C:\\clips\\loom.mp4") and not is_live("file:///clips/loom.mp4")


def test_quality_names_black_frozen_and_blurred_frames() -> None:
    quality = FrameQuality()
    assert quality.reject_reason(np.full((48, 64, 3), 8, np.uint8)) == "black"
    assert quality.reject_reason(textured(0), textured(0)) == "frozen"
    assert quality.reject_reason(blurred(0), textured(0)) == "blurred"
    assert quality.reject_reason(textured(1), textured(0)) is None
    off = FrameQuality(black_below=0, frozen_below=0, blur_below=0)
    assert off.reject_reason(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)) is None


def test_video_file_frames_are_checked_written_atomically_and_named(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    report = CameraCapture(str(clip), out, "cam-3", "L2", clock=Clock()).run()
    assert report.end_reason == "end of stream" and report.frames_read == 10 and report.reconnects == 0 and not report.failed
    assert report.written == 5 and report.rejected == {"black": 2, "frozen": 2, "blurred": 1}
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 5 and all(NAME.fullmatch(n) for n in names), names  # no temp file left behind
    assert [frame_time(Path(n)) for n in names] == [T0 + timedelta(milliseconds=100 * i) for i in (1, 2, 6, 8, 10)]
    nearest = [int(np.argmin([np.abs(got.astype(int) - sent).mean() for sent in CLIP])) for got in written_frames(out)]
    assert nearest == [0, 1, 5, 7, 9]  # MJPG is lossy: each kept frame is closest to the clip frame it came from


def test_every_n_frames_and_every_s_seconds_pick_candidates_before_the_checks(clip: Path, tmp_path: Path) -> None:
    report = CameraCapture(str(clip), tmp_path / "n", "cam-3", "L2", every_frames=2).run()
    assert report.written == 2 and report.rejected == {"black": 2, "blurred": 1}  # frames 0, 2, 4, 6, 8
    report = CameraCapture(str(clip), tmp_path / "s", "cam-3", "L2", every_seconds=0.3).run()  # 10 fps video time: 0, 3, 6, 9
    assert report.written == 4 and report.rejected == {}
    report = CameraCapture(str(clip), tmp_path / "max", "cam-3", "L2", every_frames=2).run(max_frames=1)
    assert report.end_reason == "max frames reached" and report.written == 1


def test_dropped_stream_reconnects_with_growing_backoff_and_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [textured(i) for i in range(6)]
    opened, open_capture = scripted(ScriptedCamera(frames[:3]), ScriptedCamera(None), ScriptedCamera(None), ScriptedCamera(frames[3:]))
    delays: list[float] = []
    capture = CameraCapture(
        "rtsp://10.0.3.21/stream1", tmp_path, "cam-3", "L2", open_capture=open_capture, sleep=delays.append, clock=Clock(),
        backoff_initial_s=0.5, backoff_max_s=30,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="inspect_core.ingest.camera"):
        report = capture.run(max_frames=6)
    assert report.end_reason == "max frames reached" and report.written == 6 and report.reconnects == 3
    assert delays == [0.5, 1.0, 2.0] and opened == ["rtsp://10.0.3.21/stream1"] * 4
    assert all(np.array_equal(got, sent) for got, sent in zip(written_frames(tmp_path), frames, strict=True))  # PNG: bit-exact
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == "camera cam-3: rtsp://10.0.3.21/stream1 delivers no frames; reconnect attempt 1 in 0.5 s" and len(warnings) == 3
    assert "is back after 3 reconnect attempt(s)" in caplog.text


def test_gives_up_after_max_reconnects_with_a_clear_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = ScriptedCamera([textured(0), textured(1)])
    _, open_capture = scripted(first)
    delays: list[float] = []
    capture = CameraCapture(
        0, tmp_path, "cam-3", "L2", open_capture=open_capture, sleep=delays.append, backoff_initial_s=1, backoff_max_s=3, max_reconnects=4
    )
    report = capture.run()
    assert delays == [1, 2, 3, 3] and report.reconnects == 4 and report.written == 2 and first.released
    assert report.end_reason == "gave up: no frames from camera 0 after 4 reconnect attempt(s)" and report.failed
    assert "gave up" in caplog.text


def test_bad_settings_are_refused(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        CameraCapture(str(clip), tmp_path, "cam-3", "L2", every_frames=2, every_seconds=1)
    with pytest.raises(ValueError, match="file names"):
        CameraCapture(str(clip), tmp_path, "cam/3", "L2")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        CameraCapture(str(tmp_path / "missing.mp4"), tmp_path, "cam-3", "L2")


def test_cli_captures_a_video_file_as_json(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    args = ["ingest", "camera", "--camera-source", str(clip), "--out", str(out), "--camera", "cam-3", "--line", "L2"]
    result = CliRunner().invoke(app, [*args, "--every-frames", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == 5 and report["rejected"] == {"black": 2, "frozen": 2, "blurred": 1}
    assert report["end_reason"] == "end of stream"
    assert len(list(out.glob("cam-3_L2_*.png"))) == 5
    helped = CliRunner().invoke(app, ["ingest", "camera", "--help"])
    assert all(option in helped.output for option in ("--camera-source", "--every-frames", "--every-seconds", "--max-frames", "--json"))
    missing = CliRunner().invoke(app, ["ingest", "camera", "--camera-source", str(tmp_path / "nope.mp4"), "--out", str(out)])
    assert missing.exit_code == 2 and "nope.mp4 not found" in missing.stderr
