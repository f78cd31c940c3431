"""The flows read their recipe: store.url, ingest: and score: come from `config`, parameters only override them."""

import json
from pathlib import Path

import pytest
import yaml

from flows import STORE_ENV, flow_recipe, store_url_override
from flows.ingest import ingest
from flows.score import score
from inspect_core.model.factory import EMBEDDED_MODEL_DIR
from inspect_core.store import open_store, register_model, unscored_images
from tests.flows.conftest import REPO, copy_samples, fast_recipe

PREFECT_YAML = REPO / "prefect.yaml"


def test_store_url_comes_from_the_recipe_unless_the_environment_or_a_parameter_replaces_it(tmp_path: Path, monkeypatch) -> None:
    recipe = str(fast_recipe(tmp_path / "r.yaml", store={"url": "sqlite:///from-recipe.db"}))
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert flow_recipe(recipe).store.url == "sqlite:///from-recipe.db"
    monkeypatch.setenv(STORE_ENV, "postgresql+psycopg://inspect:s3cret@db/inspect")
    assert flow_recipe(recipe).store.url == "postgresql+psycopg://inspect:s3cret@db/inspect"
    assert flow_recipe(recipe, store_url="sqlite:///param.db").store.url == "sqlite:///param.db"
    assert flow_recipe(recipe, ["score.batch_size=2"], **{"score.batch_size": 3}).score.batch_size == 3  # parameters last


@pytest.mark.usefixtures("prefect_harness")
def test_store_url_from_a_prefect_secret_block(monkeypatch) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.setenv(STORE_ENV, "sqlite:///not-this.db")
    Secret(value="postgresql+psycopg://inspect:s3cret@db/inspect").save("inspect-store-url", overwrite=True)
    assert store_url_override(store_secret="inspect-store-url") == "postgresql+psycopg://inspect:s3cret@db/inspect"


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_and_score_run_on_the_recipe_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    store_url = f"sqlite:///{tmp_path / 'recipe-store.db'}"
    copy_samples(tmp_path / "camera-folder", 2)
    recipe = str(fast_recipe(
        tmp_path / "r.yaml", store={"url": store_url}, model={"image_size": 128},
        ingest={"folder": str(tmp_path / "camera-folder"), "camera_id": "cam-4", "line_id": "L9", "settle_seconds": 0.0},
    ))  # fmt: skip
    counts = ingest(config=recipe)  # no folder, store, camera or line parameter: all from the recipe
    assert counts.registered == 2
    outcome = score(config=recipe, model="tiny")
    assert (outcome.scored, outcome.images) == (2, 2)
    engine = open_store(store_url)
    version = register_model(engine, EMBEDDED_MODEL_DIR, base_model="tiny", variant="image_size=128")  # not the saved 256: its own version
    trained_on = sorted(json.loads((EMBEDDED_MODEL_DIR / "pretrain_metrics.json").read_text())["best"]["per_class"])
    assert version.metrics == {"image_size": 128, "classes": trained_on}  # the vocabulary the base was pretrained on
    assert unscored_images(engine, version.id, None) == []
    import sqlalchemy as sa

    with engine.connect() as connection:
        sources = connection.execute(sa.text("select camera, line from sources")).all()
    assert sources == [("cam-4", "L9")]


def test_prefect_yaml_ships_every_served_deployment_for_a_process_pool() -> None:
    from flows import serve

    spec = yaml.safe_load(PREFECT_YAML.read_text())
    shipped = {(d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]): d for d in spec["deployments"]}
    for deployment in serve.deployments(timezone="UTC"):
        entry = shipped[(deployment.flow_name, deployment.name)]
        assert entry["work_pool"]["name"] == "inspect" and entry["parameters"]["config"] == deployment.parameters["config"]
        crons = [s["cron"] for s in entry.get("schedules", [])]
        assert crons == [s.schedule.cron for s in deployment.schedules]
    assert all("store_url" not in d.get("parameters", {}) for d in spec["deployments"])  # secrets stay out of parameters
