from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
import torch
from PIL import Image
from sqlmodel import Session, select
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.config import ScoreSection
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES
from inspect_core.inference.detector import Detection
from inspect_core.inference.scoring import TorchDetector, score_images, scoring_dtype
from inspect_core.store import (
    DetectionRecord,
    ImageRecord,
    ImageScore,
    QuarantineEntry,
    ReportFilter,
    ScoringRun,
    defect_rate_per_line,
    detections_frame,
    ensure_source,
    open_store,
)
from inspect_core.training.metrics import detection_map
from inspect_core.training.pretrain import synthetic_images
from tests.conftest import write_image


class BrightBlobDetector:
    """A real (non-learned) detector of the test images' white rectangles, in crop pixels.

    It lets the tests check the engine's bookkeeping (tiles mapped back and merged, thresholds,
    the store) against boxes known exactly, without depending on what a trained model predicts.
    """

    input_size = 128

    def __init__(self, score: float = 0.9) -> None:
        self.score = score
        self.calls: list[int] = []

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        self.calls.append(len(crops))
        found = []
        for crop in crops:
            mask = (crop.min(axis=2) > 200).astype(np.uint8)
            count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask)
            found.append([Detection("hole", (x, y, x + w, y + h), self.score) for x, y, w, h, area in stats[1:count] if area > 4])
        return found


def bad_files(folder: Path) -> dict[str, str]:
    """Files the scorer must quarantine, with a word its reason must contain."""
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    good = write_image(folder / "truncated.jpg", 64, 64, seed=99)
    good.write_bytes(good.read_bytes()[:300])
    Image.new("L", (300, 300)).save(folder / "bomb.png")  # over the lowered pixel limit below
    return {"empty.png": "empty", "notes.jpg": "decode", "truncated.jpg": "decode", "bomb.png": "decompression bomb"}


def test_scores_a_folder_quarantines_bad_files_and_never_scores_twice(
    store_url: str, tmp_path: Path, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    frames = tmp_path / "frames"
    for i in range(5):
        write_image(frames / f"f{i}.png", 96, 96, seed=i, rects=[(10 + 5 * i, 20, 40 + 5 * i, 50)])
    expected_reasons = bad_files(frames)
    paths = sorted(frames.iterdir())
    engine = open_store(store_url)
    settings = ScoreSection(batch_size=3, num_workers=0, max_new_tokens=12, default_threshold=0.0)
    summary = score_images(paths, str(random_tiny_dir), engine, settings)
    assert (summary.images, summary.scored, summary.quarantined, summary.skipped) == (9, 5, 4, 0)
    with Session(engine) as session:
        reasons = {Path(q.path).name: q.reason for q in session.exec(select(QuarantineEntry))}
        assert reasons.keys() == expected_reasons.keys()
        for name, word in expected_reasons.items():
            assert word in reasons[name].lower(), reasons[name]
        run = session.get(ScoringRun, summary.run_id)
        assert (run.status, run.images_scored, run.images_quarantined) == ("completed", 5, 4)
        stored = session.exec(select(sa.func.count()).select_from(DetectionRecord)).one()
        assert stored == summary.detections == sum(summary.per_class.values())

    again = score_images(paths, str(random_tiny_dir), engine, settings)
    assert (again.scored, again.skipped, again.detections) == (0, 5, 0)
    with Session(engine) as session:
        assert session.exec(select(sa.func.count()).select_from(ImageScore)).one() == 5
        assert session.exec(select(sa.func.count()).select_from(DetectionRecord)).one() == stored


def test_tiles_of_a_line_scan_strip_map_back_and_merge(tmp_path: Path) -> None:
    # A 1024 x 128 strip with three defects, one straddling the overlap between two tiles.
    rects = [(20, 30, 60, 70), (230, 40, 290, 90), (900, 10, 950, 100)]
    strip = write_image(tmp_path / "strip.png", 1024, 128, seed=1, rects=rects)
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    detector = BrightBlobDetector()
    settings = ScoreSection(batch_size=4, num_workers=0, tile=True, tile_overlap=0.25)
    summary = score_images([strip], "tiny", engine, settings, detector=detector)
    assert sum(detector.calls) == 11  # 128 px tiles at 0, 96, ..., 864 and the last at 896
    with Session(engine) as session:
        boxes = sorted((d.x1, d.y1, d.x2, d.y2) for d in session.exec(select(DetectionRecord)))
    assert summary.detections == 3  # the straddling defect was found whole and in part, and merged
    np.testing.assert_allclose(boxes, rects, atol=1.0)


def test_class_thresholds_and_whole_image_resizing(tmp_path: Path) -> None:
    image = write_image(tmp_path / "wide.png", 256, 64, seed=2, rects=[(100, 10, 140, 50)])
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    settings = ScoreSection(num_workers=0, class_thresholds={"hole": 0.85})
    kept = score_images([image], "tiny", engine, settings, detector=BrightBlobDetector(0.9))
    with Session(engine) as session:
        box = session.exec(select(DetectionRecord)).one()
        # found at 128x128 and mapped back to the 256x64 original
        np.testing.assert_allclose((box.x1, box.y1, box.x2, box.y2), (100, 10, 140, 50), atol=2.0)
    assert kept.detections == 1
    dropped = score_images(
        [write_image(tmp_path / "other.png", 64, 64, seed=3, rects=[(5, 5, 30, 30)])], "tiny", engine,
        ScoreSection(num_workers=0, class_thresholds={"hole": 0.95}), detector=BrightBlobDetector(0.9),
    )  # fmt: skip
    assert (dropped.scored, dropped.detections) == (1, 0)


def test_images_are_stored_absolute_so_report_annotate_works_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    write_image(work / "frames" / "a.png", 96, 96, seed=1, rects=[(10, 10, 40, 40)])
    write_image(work / "frames" / "b.png", 96, 96, seed=2, rects=[(50, 20, 80, 60)])
    (work / "frames" / "broken.png").write_bytes(b"")
    db = f"sqlite:///{tmp_path / 'results.db'}"
    monkeypatch.chdir(work)
    relative = [Path("frames/a.png"), Path("frames/b.png"), Path("frames/broken.png")]
    summary = score_images(relative, "tiny", open_store(db), ScoreSection(num_workers=0), detector=BrightBlobDetector())
    assert (summary.scored, summary.quarantined, summary.detections) == (2, 1, 2)
    with Session(open_store(db)) as session:
        assert sorted(i.path for i in session.exec(select(ImageRecord))) == [str(work / "frames" / n) for n in ("a.png", "b.png")]
        assert [q.path for q in session.exec(select(QuarantineEntry))] == [str(work / "frames" / "broken.png")]

    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, ["report", "--db", db, "--annotate", "top", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["missing_images"] == [] and len(payload["files"]) == 2
    for written in payload["files"]:
        assert cv2.imread(str(elsewhere / written)) is not None


def test_scoring_keeps_the_line_an_image_was_registered_with(tmp_path: Path) -> None:
    from inspect_core.ingest.folder import FolderWatcher

    frames = tmp_path / "frames"
    for i in range(3):
        write_image(frames / f"f{i}.png", 96, 96, seed=i, rects=[(10, 10, 40, 40)] if i else [])
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    FolderWatcher(frames, engine, "cam-3", "L2", settle_seconds=0).poll_once()
    elsewhere = ensure_source(engine, "cam-3", "L5")
    # As a flow shard scores: no source given; and as a mistaken caller: another line given. The registered row wins.
    score_images(sorted(frames.iterdir())[:1], "tiny", engine, ScoreSection(num_workers=0), detector=BrightBlobDetector())
    score_images(sorted(frames.iterdir())[1:], "tiny", engine, ScoreSection(num_workers=0), elsewhere, detector=BrightBlobDetector())
    per_line = defect_rate_per_line(engine, ReportFilter())
    assert [(r.line, r.images_scored, r.images_with_defects) for r in per_line.itertuples()] == [("L2", 3, 2)]
    assert set(detections_frame(engine, ReportFilter())["line"]) == {"L2"}


def test_a_run_killed_with_sigkill_finishes_exactly_once_when_restarted(tmp_path: Path, random_tiny_dir: Path) -> None:
    frames = tmp_path / "frames"
    for i in range(48):
        write_image(frames / f"f{i:02d}.png", 64, 64, seed=i)
    recipe = tmp_path / "score.yaml"
    recipe.write_text("score:\n  batch_size: 2\n  num_workers: 1\n  max_new_tokens: 24\n")
    db = tmp_path / "results.db"
    command = [
        sys.executable, "-c", "from inspect_core.cli import app; app()", "score", "--images", str(frames), "--model", str(random_tiny_dir),
        "--db", f"sqlite:///{db}", "--config", str(recipe), "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    scored = 0
    while time.monotonic() < deadline and victim.poll() is None:
        if db.exists():
            with sa.create_engine(f"sqlite:///{db}").connect() as connection:
                try:
                    scored = connection.exec_driver_sql("SELECT count(*) FROM image_scores").scalar()
                except sa.exc.OperationalError:
                    scored = 0
            if scored >= 4:
                break
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert 4 <= scored < 48, "the run must be killed part-way through"

    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=True)
    summary = json.loads(finished.stdout)
    assert summary["scored"] + summary["skipped"] == 48 and summary["skipped"] >= 4
    with sa.create_engine(f"sqlite:///{db}").connect() as connection:
        per_image = connection.exec_driver_sql("SELECT image_id, count(*) FROM image_scores GROUP BY image_id").all()
        statuses = dict(connection.exec_driver_sql("SELECT status, count(*) FROM scoring_runs GROUP BY status").all())
    assert len(per_image) == 48 and all(count == 1 for _image, count in per_image)
    assert statuses["completed"] == 1


def test_score_command_prints_a_summary(tmp_path: Path, random_tiny_dir: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "frames" / f"f{i}.jpg", 64, 64, seed=i)
    recipe = tmp_path / "score.yaml"
    recipe.write_text("score:\n  num_workers: 0\n  max_new_tokens: 8\n")
    args = ["score", "--images", str(tmp_path / "frames" / "*.jpg"), "--model", str(random_tiny_dir), "--config", str(recipe)]
    db = f"sqlite:///{tmp_path / 'results.db'}"
    result = CliRunner().invoke(app, [*args, "--db", db, "--camera", "cam-1", "--line", "L1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["scored"], summary["quarantined"]) == (3, 3, 0)
    with Session(open_store(db)) as session:
        assert session.exec(select(sa.func.count()).select_from(ImageScore)).one() == 3
    lonely = CliRunner().invoke(app, [*args, "--db", db, "--camera", "cam-1"])
    assert lonely.exit_code == 2 and "--camera and --line go together" in lonely.output
    missing = CliRunner().invoke(app, ["score", "--images", str(tmp_path / "nowhere" / "*.png"), "--db", db])
    assert missing.exit_code == 2 and "matches no file" in missing.output
    odd = CliRunner().invoke(app, [*args, "--db", db, "--precision", "fp64"])
    assert odd.exit_code == 2 and "precision" in odd.output


def test_auto_precision_picks_bf16_only_where_the_cpu_has_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert scoring_dtype("fp32", cpu) == torch.float32 and scoring_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert scoring_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert scoring_dtype("auto", cpu) == torch.bfloat16


def test_bf16_scoring_finds_what_fp32_finds_on_the_shipped_model() -> None:
    samples = synthetic_images(20_011, 0, 8)
    crops = [pixels for pixels, _annotated in samples]
    detectors = {p: TorchDetector("tiny", p) for p in ("fp32", "bf16")}
    found = {p: detector(crops, max_new_tokens=96, num_beams=1) for p, detector in detectors.items()}
    assert detectors["bf16"].model.dtype == torch.bfloat16
    truth = [a.objects for _p, a in samples]
    scores = {p: detection_map(truth, found[p], DEFECT_CLASSES).map50 for p in found}
    assert scores["fp32"] > 0.3, scores
    assert abs(scores["bf16"] - scores["fp32"]) < 0.1, scores
    for detections in found["bf16"]:
        assert all(0.0 < d.score <= 1.0 for d in detections)
