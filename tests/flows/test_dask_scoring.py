"""Scale-out: the score flow on a 2-worker local Dask cluster, each worker loading the model once for all its shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.score import score
from inspect_core.ingest.folder import FolderWatcher
from inspect_core.store import open_store
from tests.flows.conftest import copy_samples, fast_recipe

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_two_dask_workers_share_the_shards_and_load_the_model_once_each(shared_store_url: str, tmp_path: Path) -> None:
    store_url = shared_store_url
    copy_samples(tmp_path / "incoming", 6)
    engine = open_store(store_url)
    FolderWatcher(tmp_path / "incoming", engine, "cam-1", "line-1", settle_seconds=0).poll_once()

    outcome = score(store_url=store_url, model="tiny", shard_size=1, config=str(fast_recipe(tmp_path / "recipe.yaml")), dask_workers=2)

    assert (outcome.images, outcome.scored, len(outcome.store_runs)) == (6, 6, 6)
    assert len(outcome.model_loads) == 2, f"both workers should have scored shards: {outcome.model_loads}"
    assert set(outcome.model_loads.values()) == {1}, f"a worker loaded the model more than once: {outcome.model_loads}"
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(distinct image_id), count(*) from image_scores")).one() == (6, 6)
        lines = connection.execute(sa.text("select distinct s.line from image_scores c left join sources s on s.id = c.source_id")).all()
        unlined = connection.execute(sa.text("select count(*) from detections where source_id is null")).scalar()
    assert lines == [("line-1",)] and unlined == 0  # each worker's scores carry the line the images were ingested on
