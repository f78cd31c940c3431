"""The flows end to end under one temporary Prefect server, and their small pieces (sharding, caches, artifacts' text) directly."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfoNotFoundError

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
import yaml
from prefect.artifacts import Artifact

from flows import serve, tasks
from flows.ingest import ingest, ingest_markdown
from flows.pipeline import pipeline
from flows.report import report_filter
from flows.score import ScoreOutcome, per_class_rows, score, score_markdown, score_settings, task_runner
from flows.tasks import IngestCounts, ModelChoice, cached_detector, shard
from flows.train import train
from inspect_core.store import open_store
from tests.flows.conftest import REPO, copy_samples, fast_recipe


def latest(key: str) -> object:
    """The data of the newest artifact under ``key`` (tables come back as a JSON string)."""
    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key!r}"
    return json.loads(artifact.data) if artifact.type == "table" else artifact.data


# ---------------------------------------------------------------------------------------------
# The pieces, without a Prefect server


def test_shards_keep_order_and_cover_every_path() -> None:
    paths = [f"{i}.png" for i in range(7)]
    assert shard(paths, 3) == [["0.png", "1.png", "2.png"], ["3.png", "4.png", "5.png"], ["6.png"]]
    assert shard([], 4) == []
    with pytest.raises(ValueError):
        shard(paths, 0)


def test_a_process_loads_each_model_once_and_keeps_only_the_latest_few(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(
        tasks, "load_detector", lambda model_dir, backend, precision, image_size, decoder: loaded.append(model_dir) or object()
    )
    monkeypatch.setattr(tasks, "_detectors", type(tasks._detectors)())
    first = cached_detector("a", "torch", "auto")
    assert cached_detector("a", "torch", "auto") is first
    cached_detector("b", "torch", "auto")
    cached_detector("c", "torch", "auto")  # a third model evicts the least recently used one
    cached_detector("a", "torch", "auto")
    assert loaded == ["a", "b", "c", "a"]
    assert list(tasks._detectors) == [("c", "torch", "auto", None, "lean"), ("a", "torch", "auto", None, "lean")]


def test_score_settings_lay_overrides_over_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "demo.yaml"  # the demo recipe with a fixed threshold of its own
    settings = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    recipe.write_text(yaml.safe_dump(settings | {"score": settings["score"] | {"default_threshold": 0.05}}))
    assert score_settings(str(REPO / "configs" / "demo.yaml")).default_threshold is None  # demo: the model's calibrated thresholds
    plain = score_settings(str(recipe))
    assert (plain.default_threshold, plain.num_workers) == (0.05, 1)  # the recipe's threshold, the default workers
    tuned = score_settings(str(recipe), threshold=0.5, max_new_tokens=32, on_dask=True)
    assert (tuned.default_threshold, tuned.max_new_tokens, tuned.num_workers, tuned.batch_size) == (0.5, 32, 0, plain.batch_size)


def test_shards_run_here_unless_dask_is_asked_for() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    assert task_runner(dask_workers=2).cluster_kwargs["n_workers"] == 2
    remote = task_runner(dask_address="tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"


def test_artifact_texts_show_counts_model_and_reasons() -> None:
    counts = IngestCounts(registered=3, quarantined=2, polls=1, quarantine_reasons={"empty file": 2})
    assert "| 3 | 0 | 2 | 0 |" in ingest_markdown("in", counts) and "- 2 x empty file" in ingest_markdown("in", counts)
    outcome = ScoreOutcome(ModelChoice("m", 4, "m@abc", {"map50": 0.4567}), images=2, scored=2, detections=3, seconds=2.0)
    text = score_markdown(outcome)
    assert "m@abc (registry id 4)" in text and "0.457" in text and "1.00 images/s" in text
    assert per_class_rows({"stain": 1, "hole": 4, "knot": 1}) == [
        {"class": "hole", "defects": 4}, {"class": "knot", "defects": 1}, {"class": "stain", "defects": 1}
    ]  # fmt: skip
    assert per_class_rows({}) == [{"class": "(none found)", "defects": 0}]
    flt = report_filter(since="24h", line="L2", min_confidence=0.5)
    assert flt.since is not None and flt.since.utcoffset() is not None and flt.until is None and flt.line == "L2"


def test_only_the_folder_step_retries_and_only_for_file_system_errors() -> None:
    """The store retries its own calls: a Prefect retry on top would multiply them (3 x 5 = 15 tries of one call)."""
    from prefect.states import Failed

    from inspect_core.store import StoreUnavailableError

    store_only = (tasks.pick_model, tasks.list_unscored, tasks.score_shard, tasks.report_tables, tasks.plot_report_task, tasks.retrain_task)
    assert [t.retries for t in store_only] == [0] * len(store_only)
    assert tasks.ingest_folder.retries == tasks.FOLDER_RETRIES and tasks.ingest_folder.retry_condition_fn is tasks.only_file_system_errors
    condition = tasks.only_file_system_errors
    assert condition(None, None, Failed(data=OSError("share unmounted")))
    assert not condition(None, None, Failed(data=StoreUnavailableError("opening the store: failed 5 times")))
    assert not condition(None, None, Failed(data=ValueError("bad recipe")))


def test_deployments_have_cron_schedules_in_the_configured_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(serve.TIMEZONE_ENV, "Europe/Berlin")
    found = {f"{d.flow_name}/{d.name}": d for d in serve.deployments(store_url="sqlite:///elsewhere.db")}
    assert set(found) == {"ingest/continuous", "score/every-5-minutes", "train/nightly", "report/daily", "pipeline/on-demand",
                          "build-dataset/on-demand"}  # fmt: skip
    crons = {name: d.schedules[0].schedule for name, d in found.items() if d.schedules}
    assert {name: c.cron for name, c in crons.items()} == {
        "ingest/continuous": "*/5 * * * *", "score/every-5-minutes": "*/5 * * * *", "train/nightly": "0 2 * * *",
        "report/daily": "0 6 * * *",
    }  # fmt: skip
    assert {c.timezone for c in crons.values()} == {"Europe/Berlin"}
    assert found["score/every-5-minutes"].parameters["store_url"] == "sqlite:///elsewhere.db"
    assert found["ingest/continuous"].parameters["watch_seconds"] == serve.INGEST_WATCH_SECONDS
    with pytest.raises(ZoneInfoNotFoundError):
        serve.deployments(timezone="Mars/Olympus")


# ---------------------------------------------------------------------------------------------
# The flows, under the session's Prefect server


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_ingests_scores_and_reports_with_artifacts(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    copy_samples(folder, 3, labels=True)  # the label XMLs beside the images are sidecars: skipped, not quarantined
    (folder / "empty.png").write_bytes(b"")
    store_url = f"sqlite:///{tmp_path / 'results.db'}"
    recipe = str(fast_recipe(tmp_path / "recipe.yaml"))

    first = pipeline(folder=str(folder), store_url=store_url, camera="cam-9", line="L7", model="tiny", config=recipe)
    assert (first.ingested.registered, first.ingested.quarantined) == (3, 1)  # the empty PNG
    assert (first.scored.images, first.scored.scored, first.scored.model.name.split("@")[0]) == (3, 3, "tiny-fabric-base")
    assert first.reported.images_scored == 3 and first.reported.detections == first.scored.detections
    assert all(Path(p).is_file() for p in first.reported.plots)

    assert latest("scoring-progress") == 100.0
    assert sum(row["defects"] for row in latest("defects-per-class")) == first.scored.detections
    assert "| 3 | 3 | 0 | 0 |" in latest("scoring-summary") and "tiny-fabric-base@" in latest("scoring-summary")
    assert "images scored: 3" in latest("report-summary")
    summary = latest("report-summary")
    assert "file://" not in summary and summary.count('<img src="data:image/png;base64,') == 3  # the page's charts, inline
    assert Path(first.reported.html).is_file() and "file://" not in Path(first.reported.html).read_text()
    assert Artifact.get("report-defects-per-day") is None  # no image artifacts: the UI printed their data URI as an overflowing link
    assert latest("pipeline-defects-per-class") == latest("report-defects-per-class")
    assert "1. **ingest**" in latest("pipeline-summary") and "# Defect report" in latest("pipeline-summary")

    # The line follows each image into its scores and detections: the report counts them on L7, not "(no line)".
    with open_store(store_url).connect() as connection:
        defective = connection.execute(sa.text("select count(distinct image_id) from detections")).scalar()
        tables = ("image_scores", "detections")
        unlined = [connection.execute(sa.text(f"select count(*) from {t} where source_id is null")).scalar() for t in tables]
        lined = "select distinct s.camera, s.line from image_scores c join sources s on s.id = c.source_id"
        lines = connection.execute(sa.text(lined)).all()
    assert unlined == [0, 0] and lines == [("cam-9", "L7")]
    assert first.reported.images_with_defects == defective
    assert f"| L7 | 3 | {defective} | {100 * defective / 3:.1f}% |" in first.reported.markdown
    assert "(no line)" not in first.reported.markdown

    again = pipeline(folder=str(folder), store_url=store_url, camera="cam-9", line="L7", model="tiny", config=recipe)
    assert (again.ingested.registered, again.ingested.duplicates, again.scored.scored) == (0, 3, 0)
    assert "nothing to score" in latest("scoring-summary")
    with open_store(store_url).connect() as connection:
        assert connection.execute(sa.text("select count(*) from image_scores")).scalar() == 3


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_captures_frames_from_a_video_file_then_registers_them(tmp_path: Path) -> None:
    video = tmp_path / "loom.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(30):  # 3 s of sharp, changing frames: one kept per second of video
        writer.write(rng.integers(40, 220, size=(64, 96, 3), dtype=np.uint8))
    writer.release()
    counts = ingest(folder=str(tmp_path / "frames"), store_url=f"sqlite:///{tmp_path / 'r.db'}", camera="cam-7", line="L3",
                    settle_seconds=0.0, camera_source=str(video), max_frames=2)  # fmt: skip
    assert (counts.registered, counts.quarantined) == (2, 0)
    assert "- frames captured from the camera: 2" in latest("ingest-summary")


@pytest.mark.usefixtures("prefect_harness")
def test_a_camera_that_is_gone_fails_the_ingest_run_as_the_cli_does(tmp_path: Path) -> None:
    """`inspect-core ingest camera` exits 1 when it gives up on a live source; the flow run must fail too, not end Completed."""
    from inspect_core.errors import EnvironmentFailure

    quick = ["ingest.max_reconnects=0", "ingest.backoff_initial_seconds=0.01", "ingest.backoff_max_seconds=0.01"]
    with pytest.raises(EnvironmentFailure, match=r"camera cam-7 \(rtsp://127\.0\.0\.1:9/.*gave up"):
        ingest(folder=str(tmp_path / "frames"), store_url=f"sqlite:///{tmp_path / 'r.db'}", camera="cam-7", line="L3",
               settle_seconds=0.0, camera_source="rtsp://127.0.0.1:9/loom3", max_frames=2, overrides=quick)  # fmt: skip


@pytest.mark.usefixtures("prefect_harness")
def test_train_promotes_a_first_challenger_that_scoring_then_uses(tmp_path: Path) -> None:
    copy_samples(tmp_path / "labelled" / "batch-1", 8, labels=True)
    store_url = f"sqlite:///{tmp_path / 'results.db'}"
    recipe = fast_recipe(
        tmp_path / "recipe.yaml", train={"epochs": 1, "max_new_tokens": 24}, augment={"offline": False},
        dataset={"splits": {"train": 0.6, "valid": 0.4, "test": 0.0}},
        retrain={"labelled_root": str(tmp_path / "labelled")},  # no labelled parameter: the flow takes the recipe's root
    )  # fmt: skip
    common = {"validation": str(tmp_path / "validation"), "store_url": store_url,
              "work_dir": str(tmp_path / "retrain"), "config": str(recipe), "export": False}  # fmt: skip

    result = train(validation_source=str(tmp_path / "labelled" / "batch-1"), **common)
    assert result.promoted and result.champion_version_id is None and result.challenger_map50 is not None
    assert (tmp_path / "validation" / "dataset.json").is_file()
    assert "challenger promoted" in latest("retrain-summary")
    assert [row["model"] for row in latest("retrain-models")] == ["challenger", "champion (before)"]

    unchanged = train(**common)  # nothing labelled since the champion: no training, the champion stays
    assert not unchanged.promoted and unchanged.champion_version_id == result.challenger_version_id

    copy_samples(tmp_path / "incoming", 1)
    ingest(folder=str(tmp_path / "incoming"), store_url=store_url, settle_seconds=0.0)
    scored = score(store_url=store_url, config=str(recipe))
    assert (scored.model.version_id, scored.scored) == (result.challenger_version_id, 1)
    assert scored.model.metrics["map50"] == result.challenger_map50
