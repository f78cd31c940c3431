"""Hostile files and sources for `inspect-core ingest folder|camera` (issue 12), through the command line.

Each case asserts the exit code, a message naming the file (or source) and the problem, and, with
SQL of its own, that every good frame was registered once and each bad file quarantined once
however often the watcher is restarted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_image
from tests.hostile.scoring_helpers import (
    BAD_NAMES,
    GOOD,
    bytes_path,
    good_frames,
    hostile_files,
    png_of_size,
    run_cli,
    sql,
    write_fuzz_files,
)


def ingest_args(folder: Path, db: Path, *extra: str) -> list[str]:
    return ["ingest", "folder", "--images", str(folder), "--db", f"sqlite:///{db}", "--camera", "cam-1", "--line", "L1", "--once",
            "--settle-seconds", "0", "--poll-seconds", "0.01", *extra]  # fmt: skip


def registered(db: Path) -> dict[str, int]:
    return {
        "images": sql(db, "SELECT count(*) FROM images")[0][0],
        "hashes": sql(db, "SELECT count(DISTINCT sha256) FROM images")[0][0],
        "quarantined": sql(db, "SELECT count(*) FROM quarantine")[0][0],
    }


# ---------------------------------------------------------------------------------------------
# file names that are not UTF-8, a pixel bomb, quarantine once per file


@pytest.mark.parametrize(("name", "shown"), BAD_NAMES)
def test_ingest_folder_quarantines_a_name_that_is_not_utf8_and_registers_the_rest(
    name: bytes, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    with open(bytes_path(frames, name), "wb") as handle:
        handle.write(write_image(tmp_path / "spare.png", 64, 64, seed=77).read_bytes())
    for run in range(3):  # a restarted watcher meets the same file again
        code, out, err = run_cli([*ingest_args(frames, db), "--json"], capsys)
        assert code == 0, err  # it used to end in a traceback
        report = json.loads(out)
        assert report["quarantined"] == {
            f"{frames}/{shown}": f"file name {frames}/{shown} is not valid UTF-8: rename it (the store keeps paths as UTF-8 text)"
        }
        assert len(report["registered"]) == (GOOD if run == 0 else 0) and len(report["duplicates"]) == (0 if run == 0 else GOOD)
    assert registered(db) == {"images": GOOD, "hashes": GOOD, "quarantined": 1}
    assert sql(db, "SELECT path, stage FROM quarantine") == [(f"{frames}/{shown}", "ingest")]
    code, out, err = run_cli(ingest_args(frames, db), capsys)  # the human summary names it too
    assert code == 0 and f"{frames}/{shown}" in " ".join(out.split()) and "not valid UTF-8" in " ".join(out.split())


@pytest.mark.hostile_input
def test_ingest_folder_refuses_a_pixel_bomb_from_its_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    png_of_size(frames / "bomb.png", 20000, 20000)
    code, out, err = run_cli([*ingest_args(frames, db), "--json"], capsys)
    assert code == 0, err
    reason = json.loads(out)["quarantined"][str(frames / "bomb.png")]
    assert "bomb.png is 20000x20000 (400.0 megapixels)" in reason and "decode budget" in reason
    assert registered(db) == {"images": GOOD, "hashes": GOOD, "quarantined": 1}


@pytest.mark.hostile_input
def test_ingest_folder_restarted_over_bad_files_keeps_one_quarantine_row_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    (frames / "empty.png").write_bytes(b"")
    (frames / "notes.bmp").write_text("not an image")
    (frames / "half.jpg").write_bytes(write_image(tmp_path / "x.jpg", 64, 64, seed=5).read_bytes()[:200])
    for _run in range(4):
        code, out, err = run_cli([*ingest_args(frames, db), "--json"], capsys)
        assert code == 0 and len(json.loads(out)["quarantined"]) == 3, err
    assert registered(db) == {"images": GOOD, "hashes": GOOD, "quarantined": 3}


INGEST_FUZZ = 60


@pytest.mark.hostile_input(examples=INGEST_FUZZ)
@settings(max_examples=INGEST_FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=st.lists(hostile_files(), min_size=1, max_size=3))
def test_fuzzed_files_in_a_watched_folder_never_stop_ingest(files: list[tuple[str, bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        frames, db = Path(scratch) / "frames", Path(scratch) / "results.db"
        good = good_frames(frames, 2)
        hostile = write_fuzz_files(frames, files)
        code, out, err = run_cli([*ingest_args(frames, db), "--json"], capsys)
        assert code == 0, err
        report = json.loads(out)
        known = {row[0] for row in sql(db, "SELECT sha256 FROM images")}
        digest = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in [*good, *hostile]}
        assert {digest[p] for p in good} <= known
        for path in hostile:
            assert (digest[path] in known) != (str(path) in report["quarantined"]), path
            if str(path) in report["quarantined"]:
                assert path.name in report["quarantined"][str(path)]
        assert registered(db)["quarantined"] == len(report["quarantined"])


@pytest.mark.injected_fault
def test_ingest_folder_with_the_store_unreachable_exits_1_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    good_frames(frames, 2)
    args = ingest_args(frames, tmp_path / "unused.db")
    args[args.index("--db") + 1] = "postgresql+psycopg://inspect@127.0.0.1:9/results"  # nothing listens on the discard port
    code, _out, err = run_cli(args, capsys)
    assert code == 1 and "results store" in err and "127.0.0.1" in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# ingest camera: exit codes that tell a lost camera from a finished file; unusable --out


def camera_args(source: str, out: Path, *extra: str) -> list[str]:
    return ["ingest", "camera", "--camera-source", source, "--out", str(out), "--camera", "cam-3", "--line", "L2", "--every-frames", "1",
            "--set", "ingest.blur_below=0", "--set", "ingest.frozen_below=0", *extra]  # fmt: skip


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "loom.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for seed in range(6):
        writer.write(np.random.default_rng(seed).integers(60, 200, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.hostile_input
def test_a_camera_that_never_comes_back_exits_1_but_a_video_that_ends_exits_0(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = "/dev/video-inspect-missing"  # a device path: live, reconnected, and never there
    backoff = ["--set", "ingest.backoff_initial_seconds=0.01", "--set", "ingest.backoff_max_seconds=0.02", "--max-reconnects", "2"]
    code, out, err = run_cli([*camera_args(gone, tmp_path / "lost"), *backoff], capsys)
    assert code == 1, err  # it used to exit 0 after giving up
    assert f"camera cam-3 ({gone}): gave up: no frames from {gone} after 2 reconnect attempt(s)" in err
    assert "bug" not in err and "Traceback" not in err

    code, out, err = run_cli([*camera_args(str(clip), tmp_path / "frames"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["end_reason"] == "end of stream" and json.loads(out)["written"] == 6
    assert len(list((tmp_path / "frames").glob("cam-3_L2_*.png"))) == 6


@pytest.mark.hostile_input
def test_a_video_file_that_is_not_a_video_exits_3_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "loom.mp4"
    junk.write_bytes(os.urandom(4096))
    code, _out, err = run_cli(camera_args(str(junk), tmp_path / "frames"), capsys)
    assert code == 3 and f"could not read video file {junk}" in err, err


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into: a read-only tmpfs as root (root ignores modes), else mode 0555."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("running as root without mount: no folder is read-only to root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.hostile_input
def test_camera_out_that_is_read_only_exits_2_naming_it(clip: Path, read_only_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out in (read_only_dir, read_only_dir / "frames"):
        code, _out, err = run_cli(camera_args(str(clip), out), capsys)
        assert code == 2 and f"frames folder {out}" in err and ("not writable" in err), err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "shape", [pytest.param("file", marks=pytest.mark.hostile_input), pytest.param("under-a-file", marks=pytest.mark.hostile_input)]
)
def test_camera_out_that_is_a_file_exits_2_naming_it(shape: str, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "frames.png"
    blocker.write_bytes(b"a file, not a folder")
    out = blocker if shape == "file" else blocker / "today"
    code, _out, err = run_cli(camera_args(str(clip), out), capsys)
    assert code == 2 and f"frames folder {out}" in err and "is a file, not a folder" in err, err
    assert blocker.read_bytes() == b"a file, not a folder"
