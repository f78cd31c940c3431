"""Hostile images and faults for `inspect-core score` (issue 12): each through the command a user runs.

Every case asserts the exit code, a message naming the file and the problem, and, counted with SQL
of its own (not the library's summary), that every good image was scored exactly once and each bad
file quarantined once however often the command is rerun. A real but non-learned detector
(``BrightBlobDetector``) stands in for the model where the model is irrelevant, so cases take
milliseconds of model time; the kill -9 cases run the real command line in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_image
from tests.hostile.mounts import tmpfs as mounted_tmpfs
from tests.hostile.scoring_helpers import (
    BAD_NAMES,
    GOOD,
    bytes_path,
    good_frames,
    hostile_files,
    jpeg_claiming,
    png_of_size,
    run_cli,
    score_args,
    scored_paths,
    sql,
    stored_counts,
    write_fuzz_files,
)
from tests.inference.test_scoring import BrightBlobDetector

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# helpers shared with test_ingest_hostile.py


@pytest.fixture
def detector(monkeypatch: pytest.MonkeyPatch) -> BrightBlobDetector:
    """The detector `score` loads, whatever --model says: a bright-blob finder (exact boxes, no model time)."""
    found = BrightBlobDetector()
    monkeypatch.setattr("inspect_core.inference.scoring.load_detector", lambda *args, **kwargs: found)
    return found


# ---------------------------------------------------------------------------------------------
# 1. file names that are not UTF-8


@pytest.mark.parametrize(("name", "shown"), BAD_NAMES)
def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_folder_is_scored(
    name: bytes, shown: str, tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good = good_frames(frames)
    with open(bytes_path(frames, name), "wb") as handle:  # a perfectly good image: only its name is hostile
        handle.write(write_image(tmp_path / "spare.png", 64, 64, seed=77, rects=[(5, 5, 20, 20)]).read_bytes())

    code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
    # Exit 0 with the count: the batch is done, the one file it could not take is named (documented in `score --help`).
    assert code == 0, err
    assert json.loads(out)["quarantined"] == 1 and json.loads(out)["scored"] == GOOD
    assert f"quarantined {frames}/{shown}" in err and "not valid UTF-8" in err
    assert stored_counts(db) == {"scores": GOOD, "images": GOOD, "twice": 0, "detections": GOOD, "quarantined": 1}
    assert scored_paths(db) == {str(p) for p in good}
    assert sql(db, "SELECT path FROM quarantine") == [(f"{frames}/{shown}",)]

    for _rerun in range(2):  # every rerun used to fail the same way; now it is a no-op
        code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
        assert code == 0 and json.loads(out)["skipped"] == GOOD and json.loads(out)["scored"] == 0, err
    assert stored_counts(db) == {"scores": GOOD, "images": GOOD, "twice": 0, "detections": GOOD, "quarantined": 1}


@pytest.mark.hostile_input
def test_a_folder_whose_name_is_not_utf8_quarantines_its_files_only(
    tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    odd = bytes_path(frames, b"line_\xfe")
    os.mkdir(odd)
    for i in range(2):
        with open(os.path.join(odd, f"inner_{i}.png".encode()), "wb") as handle:
            handle.write(write_image(tmp_path / f"spare{i}.png", 64, 64, seed=50 + i).read_bytes())
    code, _out, err = run_cli(score_args(frames, db), capsys)
    assert code == 0, err
    assert "line_\\xfe/inner_0.png" in err and "line_\\xfe/inner_1.png" in err and "not valid UTF-8" in err
    assert stored_counts(db)["scores"] == GOOD and stored_counts(db)["quarantined"] == 2


# ---------------------------------------------------------------------------------------------
# 2. the pixel budget, checked from the header


BIG_IMAGES = [
    pytest.param("bomb.png", lambda p: png_of_size(p, 20000, 20000), "20000x20000", id="20000x20000-1bit", marks=pytest.mark.hostile_input),
    pytest.param(
        "grey.png", lambda p: png_of_size(p, 12000, 12000, 8), "12000x12000", id="12000x12000-grey", marks=pytest.mark.hostile_input
    ),
    pytest.param("pal.png", lambda p: png_of_size(p, 30000, 4000, 8, 3), "30000x4000", id="palette-strip", marks=pytest.mark.hostile_input),
    pytest.param(
        "rgba.png", lambda p: png_of_size(p, 10001, 10000, 8, 6), "10001x10000", id="just-over-rgba", marks=pytest.mark.hostile_input
    ),
    pytest.param(
        "line.png", lambda p: png_of_size(p, 1_000_001, 101), "1000001x101", id="one-megapixel-wide", marks=pytest.mark.hostile_input
    ),
    pytest.param(
        "claims.jpg", lambda p: jpeg_claiming(p, 60000, 60000), "3600000000 pixels", id="jpeg-header-60000", marks=pytest.mark.hostile_input
    ),
    pytest.param("wide.jpg", lambda p: jpeg_claiming(p, 65535, 1600), "65535x1600", id="jpeg-header-wide", marks=pytest.mark.hostile_input),
]


@pytest.mark.parametrize(("name", "make", "size"), BIG_IMAGES)
def test_an_image_over_the_pixel_budget_is_refused_from_its_header(
    name: str, make, size: str, tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    make(frames / name)
    started = time.perf_counter()
    code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
    assert code == 0, err
    assert f"quarantined {frames / name}" in err and size in err and "decode budget" in err
    assert time.perf_counter() - started < 60
    assert stored_counts(db) == {"scores": GOOD, "images": GOOD, "twice": 0, "detections": GOOD, "quarantined": 1}
    assert json.loads(out)["quarantined"] == 1


PEAK_RSS = """
import resource, sys
from pathlib import Path
from inspect_core.data.importers.image_files import probe_image, read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = [read_image(Path(sys.argv[1])), probe_image(Path(sys.argv[1]))]
assert all(isinstance(o, str) for o in outcomes), outcomes
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, outcomes[0])
"""


@pytest.mark.hostile_input
def test_a_20000x20000_png_is_refused_without_decoding_it(tmp_path: Path) -> None:
    bomb = png_of_size(tmp_path / "bomb.png", 20000, 20000, 8)  # 400 MP grey: 1.2 GB as RGB, ~0.4 MB on disk
    assert bomb.stat().st_size < 2_000_000
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bomb)], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    before_kb, peak_kb, reason = done.stdout.split(maxsplit=2)
    assert int(peak_kb) - int(before_kb) < 64_000, f"decoding costs {int(peak_kb) // 1024} MB: the header check came too late"
    assert "bomb.png is 20000x20000 (400.0 megapixels)" in reason


# ---------------------------------------------------------------------------------------------
# 3. the tile cap


TILE_CASES = [
    pytest.param(8000, 16, [], id="8000x16-strip", marks=pytest.mark.hostile_input),
    pytest.param(16, 8000, [], id="16x8000-column", marks=pytest.mark.hostile_input),
    pytest.param(20000, 2, [], id="20000x2-line", marks=pytest.mark.hostile_input),
    pytest.param(1, 3000, [], id="1px-wide", marks=pytest.mark.hostile_input),
    pytest.param(3000, 3000, ["--set", "score.tile_size=32"], id="32px-tiles-of-3000x3000", marks=pytest.mark.hostile_input),
    pytest.param(4000, 40, ["--set", "score.tile_overlap=0.99"], id="99pct-overlap", marks=pytest.mark.hostile_input),
]


@pytest.mark.parametrize(("width", "height", "extra"), TILE_CASES)
def test_tiling_an_extreme_image_is_capped(
    width: int, height: int, extra: list[str], tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    from inspect_core.inference.tiling import MAX_TILES_PER_IMAGE

    frames, db = tmp_path / "frames", tmp_path / "results.db"
    write_image(frames / "strip.png", width, height, seed=1)
    started = time.perf_counter()
    code, out, err = run_cli([*score_args(frames, db), "--tile", *extra, "--json"], capsys)
    assert code == 0, err
    assert 1 <= sum(detector.calls) <= MAX_TILES_PER_IMAGE == 100  # was 616 tiles (155 s) for the 8000x16 strip
    assert time.perf_counter() - started < 30
    assert json.loads(out)["scored"] == 1 and stored_counts(db)["scores"] == 1


@pytest.mark.hostile_input
def test_poses_of_a_capped_strip_stay_capped_and_a_pose_count_that_does_not_exist_is_a_usage_error(
    tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:  # fmt: skip
    from inspect_core.inference.tiling import MAX_TILES_PER_IMAGE

    frames, db = tmp_path / "frames", tmp_path / "results.db"
    write_image(frames / "strip.png", 8000, 16, seed=1)
    code, out, err = run_cli([*score_args(frames, db), "--tile", "--set", "score.tta_poses=8", "--json"], capsys)
    assert code == 0, err
    assert 8 <= sum(detector.calls) <= 8 * MAX_TILES_PER_IMAGE  # the tile cap holds; each tile is asked 8 times
    assert sum(detector.calls) % 8 == 0 and json.loads(out)["scored"] == 1
    code, _out, err = run_cli([*score_args(frames, db), "--set", "score.tta_poses=3"], capsys)
    assert code == 2 and "score.tta_poses" in err and "1, 2, 4 or 8" in err


# ---------------------------------------------------------------------------------------------
# 6. quarantine grows no row per rerun


@pytest.mark.hostile_input
def test_rerunning_over_bad_files_keeps_one_quarantine_row_each(
    tmp_path: Path, detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames)
    (frames / "empty.png").write_bytes(b"")
    (frames / "text.jpg").write_text("not an image")
    (frames / "cut.png").write_bytes((frames / "good_0.png").read_bytes()[:100])
    for run in range(4):
        code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
        assert code == 0 and json.loads(out)["quarantined"] == 3, err
        assert "empty.png is an empty file" in err and "text.jpg" in err and "cut.png" in err
        runs = sql(db, "SELECT count(*) FROM scoring_runs")[0][0]
        assert runs == run + 1
    assert stored_counts(db) == {"scores": GOOD, "images": GOOD, "twice": 0, "detections": GOOD, "quarantined": 3}
    # the rows point at the run that met them last, so that run's count is right
    assert sql(db, "SELECT DISTINCT run_id FROM quarantine") == [(4,)]


# ---------------------------------------------------------------------------------------------
# 7. faults: kill -9, the store going away


SCORE_IN_SUBPROCESS = """
import sys, time
import cv2, numpy as np
import inspect_core.inference.scoring as scoring
from inspect_core.inference.detector import Detection

class SlowBlobs:
    input_size = 64
    def __call__(self, crops, max_new_tokens, num_beams):
        time.sleep(0.03 * len(crops))  # a model's worth of time per crop, so a kill lands mid-run
        out = []
        for crop in crops:
            count, _l, stats, _c = cv2.connectedComponentsWithStats((crop.min(axis=2) > 200).astype(np.uint8))
            out.append([Detection("hole", (x, y, x + w, y + h), 0.9) for x, y, w, h, a in stats[1:count] if a > 4])
        return out

scoring.load_detector = lambda *a, **k: SlowBlobs()
from inspect_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_score(frames: Path, db: Path, workers: int, batch: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-c", SCORE_IN_SUBPROCESS, "score", "--images", str(frames), "--model", "tiny", "--db", f"sqlite:///{db}"]
    command += ["--set", f"score.num_workers={workers}", "--set", f"score.batch_size={batch}", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # Output to files, not pipes: a surviving worker would hold a pipe open and hang the test instead of failing it.
    out, err = (open(db.with_name(f"{db.name}.{pipe}"), "w") for pipe in ("out", "err"))
    with out, err:
        return subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=REPO, start_new_session=True)


def finish_score(frames: Path, db: Path) -> dict:
    victim = start_score(frames, db, workers=1, batch=8)
    assert victim.wait(timeout=300) == 0, db.with_name(f"{db.name}.err").read_text()
    return json.loads(db.with_name(f"{db.name}.out").read_text())


def wait_for_scores(db: Path, victim: subprocess.Popen, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            scored = sql(db, "SELECT count(*) FROM image_scores")[0][0] if db.exists() else 0
        except sqlite3.OperationalError:  # not created yet
            scored = 0
        if scored >= at_least:
            return scored
        time.sleep(0.02)
    raise AssertionError(f"the scorer did not reach {at_least} scored images (exit {victim.poll()})")


def session_members(session_id: int) -> dict[int, str]:
    """Live (non-zombie) processes of a session: pid -> state. A killed scorer's workers keep its session id."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
            found[int(entry.name)] = fields[0]
    return found


def kill_all(session_id: int) -> None:
    for pid in session_members(session_id):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def assert_exactly_once(db: Path, total: int) -> None:
    counts = stored_counts(db)
    assert counts["scores"] == counts["images"] == total and counts["twice"] == 0 and counts["detections"] == total


@pytest.mark.injected_fault
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_image_reading_workers_die_with_a_killed_scorer(tmp_path: Path) -> None:
    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames, 40)
    victim = start_score(frames, db, workers=2)
    try:
        wait_for_scores(db, victim, 4)
        workers = [pid for pid in session_members(victim.pid) if pid != victim.pid]
        assert len(workers) == 2, "the scorer must be running its two reading workers when it is killed"
        os.kill(victim.pid, 9)  # the scorer alone: its workers are not signalled
        victim.wait(timeout=30)
        deadline = time.monotonic() + 2  # torch's own check of the parent runs only every 5 s, and not while a worker is blocked
        while time.monotonic() < deadline and session_members(victim.pid):
            time.sleep(0.05)
        assert session_members(victim.pid) == {}, "image-reading workers outlived their killed scorer"
    finally:
        kill_all(victim.pid)
    summary = finish_score(frames, db)
    assert summary["skipped"] >= 4 and summary["scored"] + summary["skipped"] == 40
    assert_exactly_once(db, 40)
    statuses = dict(sql(db, "SELECT status, count(*) FROM scoring_runs GROUP BY status"))
    assert statuses.get("completed") == 1 and statuses.get("running") is None  # the killed run was reaped


@pytest.mark.slow
@pytest.mark.injected_fault
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_a_random_point_then_a_rerun_scores_every_image_exactly_once(seed: int, tmp_path: Path) -> None:
    import random

    frames, db = tmp_path / "frames", tmp_path / "results.db"
    good_frames(frames, 30, seed=seed)
    (frames / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rng = random.Random(seed)
    victim = start_score(frames, db, workers=rng.choice([0, 1, 2]))
    try:
        target = rng.choice([0, rng.randint(1, 28)])
        if target:  # mid-run: after a random number of images, anywhere inside a batch
            wait_for_scores(db, victim, target)
            time.sleep(rng.uniform(0, 0.06))
        else:  # before the first batch: importing, creating the store, registering the model
            time.sleep(rng.uniform(0.2, 6.0))
        os.killpg(victim.pid, 9)
        victim.wait(timeout=30)
    finally:
        kill_all(victim.pid)
    summary = finish_score(frames, db)
    assert summary["scored"] + summary["skipped"] == 30 and summary["quarantined"] == 1
    assert_exactly_once(db, 30)
    assert stored_counts(db)["quarantined"] == 1


@pytest.mark.injected_fault
def test_a_store_that_cannot_be_reached_exits_1_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    good_frames(frames, 2)
    url = "postgresql+psycopg://inspect@127.0.0.1:9/results"  # the discard port: nothing listens
    code, _out, err = run_cli(["score", "--images", str(frames), "--model", "tiny", "--db", url], capsys)
    assert code == 1 and "results store" in err and "127.0.0.1" in err, err
    assert "bug" not in err and "Traceback" not in err


class StoreKiller(BrightBlobDetector):
    """Scores normally, and pulls the store away just before the scorer writes its ``after``-th batch."""

    def __init__(self, after: int, pull: object) -> None:
        super().__init__()
        self.after, self.pull = after, pull

    def __call__(self, crops, max_new_tokens, num_beams):  # type: ignore[no-untyped-def]
        if len(self.calls) + 1 == self.after:
            self.pull()
        return super().__call__(crops, max_new_tokens, num_beams)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of our own (root only): a disk the test can fill under a running scorer."""
    with mounted_tmpfs(tmp_path / "mnt", "16m") as where:
        yield where


def fill(disk: Path) -> Path:
    """Write zeros to ``disk`` until it is full; the filler file (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 20))
                handle.flush()
        except OSError:
            pass
    return filler


@pytest.mark.injected_fault
def test_a_full_disk_under_the_store_mid_run_stops_cleanly_and_a_rerun_completes(
    tmpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, db = tmp_path / "frames", tmpfs / "results.db"
    good_frames(frames, 12)
    filled: list[Path] = []
    killer = StoreKiller(after=3, pull=lambda: filled.append(fill(tmpfs)))
    monkeypatch.setattr("inspect_core.inference.scoring.load_detector", lambda *a, **k: killer)
    code, _out, err = run_cli([*score_args(frames, db), "--set", "score.batch_size=2"], capsys)
    assert code == 1 and "full" in err.lower() and "bug" not in err, err  # the machine failed, not the code
    assert "Traceback" not in err
    filled[0].unlink()  # space freed
    written = stored_counts(db)
    assert written["scores"] == 4 and written["twice"] == 0  # the two batches before the fault, whole; nothing half-written

    monkeypatch.setattr("inspect_core.inference.scoring.load_detector", lambda *a, **k: BrightBlobDetector())
    code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
    assert code == 0, err
    assert (json.loads(out)["scored"], json.loads(out)["skipped"]) == (8, 4)
    assert_exactly_once(db, 12)


@pytest.mark.injected_fault
def test_postgresql_going_away_mid_run_exits_1_and_a_rerun_completes_exactly_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    from tests.conftest import POSTGRES_ADMIN_URL

    frames = tmp_path / "frames"
    good_frames(frames, 12)
    name = sa.engine.make_url(postgres_url).database
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def outage(allow: bool) -> None:  # this test's own database refuses connections, and the open ones are cut
        with admin.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}'))
            if not allow:
                connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})

    killer = StoreKiller(after=3, pull=lambda: outage(False))
    monkeypatch.setattr("inspect_core.inference.scoring.load_detector", lambda *a, **k: killer)
    args = ["score", "--images", str(frames), "--model", "tiny", "--db", postgres_url, "--set", "score.num_workers=0"]
    try:
        code, _out, err = run_cli([*args, "--set", "score.batch_size=2"], capsys)
    finally:
        outage(True)
    assert code == 1 and "results store failed" in err and "Traceback" not in err, err

    monkeypatch.setattr("inspect_core.inference.scoring.load_detector", lambda *a, **k: BrightBlobDetector())
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    assert (json.loads(out)["scored"], json.loads(out)["skipped"]) == (8, 4)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        per_image = connection.execute(sa.text("SELECT count(*) FROM image_scores GROUP BY image_id")).scalars().all()
    engine.dispose()
    admin.dispose()
    assert sorted(per_image) == [1] * 12


# ---------------------------------------------------------------------------------------------
# 8. fuzzing the decoders: random, truncated and mutated PNG and JPEG files beside good frames


FUZZ_EXAMPLES = 60


@pytest.mark.hostile_input(examples=FUZZ_EXAMPLES)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=st.lists(hostile_files(), min_size=1, max_size=3))
def test_fuzzed_image_files_never_stop_a_score_run(
    files: list[tuple[str, bytes]], detector: BrightBlobDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        frames, db = Path(scratch) / "frames", Path(scratch) / "results.db"
        good = good_frames(frames, 2)
        hostile = write_fuzz_files(frames, files)
        code, out, err = run_cli([*score_args(frames, db), "--json"], capsys)
        assert code == 0, err
        summary = json.loads(out)
        quarantined = dict(sql(db, "SELECT path, reason FROM quarantine"))
        scored = {row[0] for row in sql(db, "SELECT i.sha256 FROM images i JOIN image_scores s ON s.image_id = i.id")}
        digest = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in [*good, *hostile]}
        assert {digest[p] for p in good} <= scored  # the good frames, always
        for path in hostile:  # each hostile file either decoded (a mutation can leave a valid image) or was quarantined, naming it
            assert (digest[path] in scored) != (str(path) in quarantined), path
            if str(path) in quarantined:
                assert path.name in quarantined[str(path)] and f"quarantined {path}" in err
        assert summary["quarantined"] == len(quarantined)
        counts = stored_counts(db)
        assert counts["twice"] == 0 and counts["scores"] == len({digest[p] for p in [*good, *hostile] if str(p) not in quarantined})


DECODE_EXAMPLES = 150


@pytest.mark.hostile_input(examples=DECODE_EXAMPLES)
@settings(max_examples=DECODE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=hostile_files())
def test_fuzzed_image_bytes_decode_or_give_a_reason_naming_the_file(file: tuple[str, bytes], tmp_path: Path) -> None:
    """The decoders every file walk uses (scoring's read_image, ingest's probe_image) never raise on hostile bytes."""
    from inspect_core.data.importers.image_files import probe_image, read_image

    kind, data = file
    path = tmp_path / f"hostile.{kind}"
    path.write_bytes(data)
    pixels, probed = read_image(path), probe_image(path)
    for outcome in (pixels, probed):
        assert not isinstance(outcome, str) or path.name in outcome, outcome
    if not isinstance(pixels, str):
        assert pixels[0].ndim == 3 and pixels[0].shape[2] == 3
