from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from inspect_core.config import InspectConfig
from inspect_core.data.synthetic_fabric import write_voc_dataset
from inspect_core.store import champion, open_store
from inspect_core.training.retraining import new_labelled_batches, retrain


@pytest.fixture
def nightly(tmp_path: Path) -> InspectConfig:
    return InspectConfig.model_validate({
        "dataset": {"format": "voc", "tasks": ["od"], "splits": {"train": 0.75, "valid": 0.25, "test": 0.0}},
        "augment": {"offline": False, "online": False},
        "model": {"name": "tiny", "image_size": 256},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "max_new_tokens": 24, "precision": "fp32"},
    })  # fmt: skip


def test_new_batches_are_those_changed_after_the_champion(tmp_path: Path) -> None:
    for name, age in (("2026-11-20", 3600), ("2026-11-21", 0)):
        write_voc_dataset(tmp_path / name, count=1, seed=1, size=64)
        stamp = time.time() - age
        for path in [tmp_path / name, *(tmp_path / name).rglob("*")]:
            os.utime(path, (stamp, stamp))
    from datetime import datetime, timedelta, timezone

    assert [p.name for p in new_labelled_batches(tmp_path, None)] == ["2026-11-20", "2026-11-21"]
    since = datetime.now(timezone.utc) - timedelta(minutes=30)
    assert [p.name for p in new_labelled_batches(tmp_path, since)] == ["2026-11-21"]
    with pytest.raises(FileNotFoundError, match="labelled-data folder not found"):
        new_labelled_batches(tmp_path / "missing", None)


def test_promotes_a_challenger_only_when_it_clears_the_margin_over_the_champion(
    tmp_path: Path, nightly: InspectConfig, small_dataset: Path
) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    labelled = tmp_path / "labelled"
    write_voc_dataset(labelled / "2026-11-20", count=6, seed=11, size=256)

    first = retrain(nightly, labelled, engine, tmp_path / "nightly", small_dataset, export=False)
    assert first.promoted and first.reason == "first model" and first.champion_map50 is None
    assert champion(engine).id == first.challenger_version_id
    assert champion(engine).metrics["map50"] == first.challenger_map50

    nothing_new = retrain(nightly, labelled, engine, tmp_path / "nightly", small_dataset, export=False)
    assert not nothing_new.promoted and nothing_new.reason == "no labelled data since the champion"

    # The next night's challenger must beat the champion by a margin it cannot reach: it is not promoted.
    write_voc_dataset(labelled / "2026-11-21", count=6, seed=12, size=256)
    worse = retrain(nightly, labelled, engine, tmp_path / "nightly", small_dataset, margin=1.01, export=False)
    assert not worse.promoted and "the champion stays" in worse.reason
    assert worse.champion_map50 is not None and worse.challenger_map50 is not None
    assert champion(engine).id == first.challenger_version_id
    assert Path(champion(engine).path).is_dir()  # the champion's files survive later runs

    # With a margin the challenger clears (-1: any mAP does), it is promoted and both scores are kept.
    write_voc_dataset(labelled / "2026-11-22", count=6, seed=13, size=256)
    cleared = retrain(nightly, labelled, engine, tmp_path / "nightly", small_dataset, margin=-1.0, export=False)
    assert cleared.promoted and champion(engine).id == cleared.challenger_version_id
    assert champion(engine).metrics["champion_map50"] == cleared.champion_map50 == worse.champion_map50


def test_an_early_stopped_challenger_is_a_finished_one(tmp_path: Path, nightly: InspectConfig, small_dataset: Path) -> None:
    # lr ~0: epoch 2 cannot beat epoch 1, so patience 1 stops the run there, as planned: it still competes.
    train = nightly.train.model_copy(update={"epochs": 3, "early_stopping_patience": 1, "lr": 1e-12})
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    write_voc_dataset(tmp_path / "labelled" / "2026-11-20", count=4, seed=11, size=256)
    result = retrain(nightly.model_copy(update={"train": train}), tmp_path / "labelled", engine, tmp_path / "nightly", small_dataset,
                     export=False)  # fmt: skip
    metrics = json.loads(next((tmp_path / "nightly").glob("*/train/metrics.json")).read_text())
    assert metrics["stopped"] == "early-stopping" and metrics["epochs_run"] == 2
    assert result.promoted and result.reason == "first model"


def test_a_challenger_that_ran_out_its_time_budget_is_a_finished_one(tmp_path: Path, nightly: InspectConfig,
                                                                    small_dataset: Path) -> None:  # fmt: skip
    """train.max_minutes shrinks the run to fit (anneal included) and it ends as planned; should a slow step still overrun,
    the run stops on ``time-limit``, which retraining also takes as a finished run. Either way the challenger competes."""
    train = nightly.train.model_copy(update={"epochs": 50, "max_minutes": 0.02})
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    write_voc_dataset(tmp_path / "labelled" / "2026-11-20", count=4, seed=11, size=256)
    result = retrain(nightly.model_copy(update={"train": train}), tmp_path / "labelled", engine, tmp_path / "nightly", small_dataset,
                     export=False)  # fmt: skip
    metrics = json.loads(next((tmp_path / "nightly").glob("*/train/metrics.json")).read_text())
    assert metrics["stopped"] == "completed" and metrics["epochs_run"] < 50  # the budget shrank the 50 epochs
    assert result.promoted and result.challenger_version_id is not None and result.reason == "first model"
