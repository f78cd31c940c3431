"""`inspect-core score --threshold/--rescore`, and the results store it names when --db is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspect_core.cli import app
from tests.conftest import write_image

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


class _Scored:
    def __init__(self) -> None:
        self.quarantined_files: dict[str, str] = {}

    def as_dict(self) -> dict:
        return {"scored": 0}


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        ([], "results store: sqlite:///runs/results.db (the default store.url; --db chooses another)"),
        (["--config", str(DEMO)], "results store: sqlite:///runs/demo/results.db (store.url of the recipe)"),
        (["--db", "sqlite:///elsewhere.db"], None),
    ],
    ids=["default", "recipe", "db"],
)
def test_score_threshold_rescore_and_the_store_it_writes_to(
    extra: list[str], shown: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def fake_score(config, images, camera=None, line=None, hooks=None, rescore=False):
        seen.update(config=config, images=list(images), rescore=rescore)
        return _Scored()

    monkeypatch.setattr("inspect_core.pipeline.score", fake_score)
    if extra[:1] == ["--config"]:  # the demo recipe with a fixed threshold of its own, which a plain score must use
        recipe = yaml.safe_load(DEMO.read_text())
        recipe["score"]["default_threshold"] = 0.05
        extra = ["--config", str(tmp_path / "demo.yaml")]
        (tmp_path / "demo.yaml").write_text(yaml.safe_dump(recipe))
    image = write_image(tmp_path / "frames" / "a.png")
    result = runner.invoke(app, ["score", "--images", str(image), "--threshold", "0.25", "--rescore", "--json", *extra])
    assert result.exit_code == 0, result.output
    assert seen["config"].score.default_threshold == 0.25 and seen["rescore"] is True and seen["images"] == [image]
    err = " ".join(result.stderr.split())
    assert (shown in err) if shown else "results store" not in err
    plain = runner.invoke(app, ["score", "--images", str(image), "--json", *extra])
    assert (
        plain.exit_code == 0
        and seen["rescore"] is False
        and seen["config"].score.default_threshold == (0.05 if extra[:1] == ["--config"] else None)
    )


def test_score_threshold_is_checked() -> None:
    result = runner.invoke(app, ["score", "--images", "x", "--threshold", "1.5"])
    assert result.exit_code == 2 and "--threshold" in result.output


def test_rescore_scores_again_as_a_new_run_and_the_threshold_is_the_runs(tmp_path: Path) -> None:
    for seed in range(2):
        write_image(tmp_path / "frames" / f"{seed}.png", 96, 96, seed=seed)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    args = ["score", "--images", str(tmp_path / "frames"), "--db", db, "--set", "score.max_new_tokens=8", "--set", "score.num_workers=0",
            "--threshold", "0.4", "--json"]  # fmt: skip
    runs = [json.loads(runner.invoke(app, [*args, *extra]).stdout) for extra in ([], ["--rescore"], [])]
    assert [(r["scored"], r["skipped"]) for r in runs] == [(2, 0), (2, 0), (0, 2)]  # without --rescore, scored images are skipped
    assert len({r["run_id"] for r in runs}) == 3 and [r["rescored"] for r in runs] == [False, True, False]
    assert all(r["thresholds"]["default"] == 0.4 and r["thresholds"]["classes"] == {} for r in runs)
