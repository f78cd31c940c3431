"""`inspect-core review export` (issue 14), and the loop it closes: reviews -> a labelled batch -> nightly retraining
registers a challenger trained on it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspect_core.cli import main
from inspect_core.config import InspectConfig
from inspect_core.data.sources import import_sources
from inspect_core.store import champion
from tests.data.test_exporters import REVIEWED, review_everything
from tests.store.review_seed import ReviewStore, seed_review_store


@pytest.fixture
def reviewed(tmp_path: Path) -> ReviewStore:
    store = seed_review_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)
    review_everything(store)
    return store


def export(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["review", "export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_writes_the_batch_and_says_what_it_left_out(
    reviewed: ReviewStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "labelled" / "2026-11-21"
    code, out, err = export(capsys, "--db", reviewed.url, "--out", str(batch), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["out"] == str(batch) and summary["frames"] == 4 and summary["boxes"] == {"hole": 1, "oil": 1, "slub": 1}
    assert [Path(s["image"]).name for s in summary["skipped"]] == ["f4.png"]
    imported = import_sources(batch, InspectConfig().dataset)
    assert sorted(i.sha256 for i in imported.images) == sorted(reviewed.shas[name] for name in REVIEWED)
    code, out, err = export(capsys, "--db", reviewed.url, "--out", str(batch))
    assert code == 2 and "already exists; pass --overwrite" in err
    code, out, err = export(capsys, "--db", reviewed.url, "--out", str(batch), "--overwrite", "--copy")
    assert code == 0 and "wrote 4 frame(s)" in out and "0 image(s) linked, 4 copied" in out and "left out" in err


def test_the_default_batch_is_todays_folder_under_labelled(reviewed: ReviewStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = export(capsys, "--db", reviewed.url)
    assert code == 0, err
    assert len(list((work / "labelled" / date.today().isoformat()).glob("*.xml"))) == 4
    code, out, err = export(capsys, "--db", reviewed.url, "--label-format", "label-studio", "--limit", "2", "--json")
    assert code == 0, err
    tasks = json.loads((work / "label-studio" / date.today().isoformat() / "tasks.json").read_text())
    assert len(tasks) == json.loads(out)["frames"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--label-format", "coco"], "--label-format 'coco': use voc or label-studio"),
        (["--limit", "3"], "--limit applies to --label-format label-studio"),
        (["--label-format", "label-studio", "--reviewed-after", "1d"], "--reviewed-after applies to --label-format voc"),
        (["--since", "yesterday-ish"], "--since: not a time"),
        (["--model", "m\x00"], None),
    ],
)
def test_bad_options_are_usage_errors(reviewed: ReviewStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                      message: str | None) -> None:  # fmt: skip
    code, _out, err = export(capsys, "--db", reviewed.url, "--out", str(tmp_path / "b"), *argv)
    assert code == 2 and "Traceback" not in err
    assert message is None or message in " ".join(err.split())
    assert not (tmp_path / "b").exists()


def test_a_missing_store_or_the_labelled_root_as_out_is_refused(reviewed: ReviewStore, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, _out, err = export(capsys, "--db", f"sqlite:///{tmp_path / 'nope.db'}", "--out", str(tmp_path / "b"))
    assert code == 2 and "no results store at" in err and not (tmp_path / "nope.db").exists()
    root = tmp_path / "labelled"
    (root / "2026-11-20").mkdir(parents=True)
    code, _out, err = export(capsys, "--db", reviewed.url, "--out", str(root), "--overwrite")
    assert code == 2 and "looks like the labelled root" in " ".join(err.split()) and (root / "2026-11-20").is_dir()


def test_nothing_reviewed_writes_nothing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = seed_review_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)
    code, out, _err = export(capsys, "--db", store.url, "--out", str(tmp_path / "b"))
    assert code == 0 and "nothing to export" in out and not (tmp_path / "b").exists()


def test_reviews_exported_feed_nightly_retraining_which_registers_a_challenger(reviewed: ReviewStore, tmp_path: Path,
                                                                              small_dataset: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The loop: review -> ``review export`` -> ``retrain`` (the nightly flow's library call) on the tiny model, one epoch."""
    from inspect_core.training.retraining import retrain

    labelled = tmp_path / "plant-labelled"  # the recipe's retrain.labelled_root: export writes <today>/ there by default
    code, _out, err = export(capsys, "--db", reviewed.url, "--set", f"retrain.labelled_root={labelled}")
    assert code == 0, err
    assert [p.name for p in labelled.iterdir()] == [date.today().isoformat()]
    with reviewed.engine.connect() as connection:
        before = connection.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one()
    nightly = InspectConfig.model_validate({
        "dataset": {"format": "voc", "tasks": ["od"], "splits": {"train": 0.75, "valid": 0.25, "test": 0.0}, "workers": 1},
        "augment": {"offline": False, "online": False},
        "model": {"name": "tiny", "image_size": 256},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "max_new_tokens": 24, "precision": "fp32"},
        "retrain": {"labelled_root": str(labelled)},
    })  # fmt: skip
    result = retrain(nightly, nightly.retrain.labelled_root, reviewed.engine, tmp_path / "nightly", small_dataset, export=False)
    assert result.challenger_version_id is not None and result.promoted and result.reason == "first model"
    with reviewed.engine.connect() as connection:
        after = connection.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one()
        metrics = connection.execute(
            sa.text("SELECT metrics FROM model_versions WHERE id = :i"), {"i": result.challenger_version_id}
        ).scalar()
    assert after == before + 1 and champion(reviewed.engine).id == result.challenger_version_id
    trained_on = (json.loads(metrics) if isinstance(metrics, str) else metrics)["trained_on"]
    assert trained_on == [str(labelled / date.today().isoformat())]


def test_a_night_before_the_first_export_is_quiet_and_says_where_it_looked(reviewed: ReviewStore, tmp_path: Path,
                                                                          small_dataset: Path) -> None:  # fmt: skip
    from inspect_core.training.retraining import retrain

    missing = tmp_path / "not-yet"
    result = retrain(InspectConfig(), missing, reviewed.engine, tmp_path / "nightly", small_dataset, export=False)
    assert not result.promoted and result.challenger_version_id is None and f"{missing} does not exist yet" in result.reason
