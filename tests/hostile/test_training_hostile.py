"""Hostile training runs (issue 12): kill -9 at any point, a crash inside a checkpoint write, torn and unreadable checkpoints.

The oracle is an uninterrupted run of the same recipe: whatever happened to a run, ``--resume``
must finish with the same weights (``latest/`` and ``best/``), the same per-epoch losses and the
same best epoch. The checkpoint protocol (:mod:`inspect_core.training.checkpoints`) is also hit at
every step of a write, so each crash point is seen to leave a checkpoint whose weights and trainer
state belong together.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from inspect_core.cli import main
from inspect_core.config import InspectConfig, LoraSection, ModelSection, TrainSection
from inspect_core.errors import EnvironmentFailure
from inspect_core.training import checkpoints
from inspect_core.training.checkpoints import STATE_FILE, publish, resume_point
from inspect_core.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / ".venv" / "bin" / "inspect-core"
ADAPTER = "adapter_model.safetensors"
TRAIN = {"epochs": 2, "batch_size": 4, "lr": 2e-3, "max_new_tokens": 8, "seed": 3}


# --- the checkpoint protocol, crashed at every step --------------------------------------------------------


def epoch_writer(epoch: int):
    """A checkpoint whose weights are the epoch number, so weights and trainer state can be checked to belong together."""

    def write(folder: Path) -> None:
        save_file({"w": torch.full((64,), float(epoch))}, folder / ADAPTER)
        state = {"optimizer": {}, "scheduler": {}, "rng": {}, "epoch": epoch, "history": list(range(epoch + 1)),
                 "best_metric": float(epoch), "best_epoch": epoch + 1, "stale_epochs": 0}  # fmt: skip
        torch.save(state, folder / STATE_FILE)

    return write


def consistent(point: checkpoints.ResumePoint) -> int:
    epoch = point.state["epoch"]
    assert torch.equal(point.weights["w"], torch.full((64,), float(epoch))), "weights from one epoch, trainer state from another"
    assert point.state["history"] == list(range(epoch + 1))
    return epoch


@pytest.mark.injected_fault
@pytest.mark.parametrize("crash_at", range(1, 7), ids=lambda n: f"system-call-{n}")
def test_a_crash_at_any_step_of_a_checkpoint_write_leaves_a_consistent_one(tmp_path: Path, monkeypatch, crash_at: int) -> None:
    """Epochs 0 and 1 are written; epoch 2's write (staging, flush, best swap, latest swap) dies at its n-th rename or fsync."""
    publish(tmp_path, epoch_writer(0), improved=True)
    publish(tmp_path, epoch_writer(1), improved=True)
    calls = {"n": 0}
    real_rename, real_fsync = os.rename, os.fsync

    def dying(real):
        def call(*args):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt("killed")  # not an OSError: nothing may clean up after it, as after kill -9
            return real(*args)

        return call

    monkeypatch.setattr(checkpoints.os, "rename", dying(real_rename))
    monkeypatch.setattr(checkpoints.os, "fsync", dying(real_fsync))
    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path, epoch_writer(2), improved=True)
    monkeypatch.undo()
    point = resume_point(tmp_path)
    assert consistent(point) in (1, 2)
    best = load_file(tmp_path / "best" / ADAPTER)["w"][0].item()
    assert best in (1.0, 2.0) and best >= consistent(point)  # best/ is never behind latest/: it is swapped in first


@pytest.mark.injected_fault
def test_a_crash_inside_the_writer_keeps_latest_and_the_next_write_clears_the_leftover(tmp_path: Path) -> None:
    publish(tmp_path, epoch_writer(0), improved=True)

    def half_written(folder: Path) -> None:
        (folder / ADAPTER).write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path, half_written, improved=True)
    assert consistent(resume_point(tmp_path)) == 0
    publish(tmp_path, epoch_writer(1), improved=False)
    assert consistent(resume_point(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "latest", "previous"]


@pytest.mark.injected_fault
def test_a_full_disk_during_a_checkpoint_write_is_an_environment_failure_that_keeps_the_last_one(tmp_path: Path) -> None:
    publish(tmp_path, epoch_writer(0), improved=True)

    def disk_full(folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(EnvironmentFailure, match=rf"cannot write a checkpoint in {tmp_path}: No space left on device"):
        publish(tmp_path, disk_full, improved=True)
    assert consistent(resume_point(tmp_path)) == 0


@pytest.mark.injected_fault
@pytest.mark.parametrize("damage", ["truncated-state", "empty-state", "truncated-adapter", "missing-state", "state-not-a-dict"])
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path: Path, caplog, damage: str) -> None:
    publish(tmp_path, epoch_writer(0), improved=True)
    publish(tmp_path, epoch_writer(1), improved=False)
    state, adapter = tmp_path / "latest" / STATE_FILE, tmp_path / "latest" / ADAPTER
    if damage == "truncated-state":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "empty-state":
        state.write_bytes(b"")
    elif damage == "truncated-adapter":
        adapter.write_bytes(adapter.read_bytes()[:100])
    elif damage == "missing-state":
        state.unlink()
    else:
        torch.save([1, 2, 3], state)
    with caplog.at_level(logging.WARNING, logger="inspect_core.training.checkpoints"):
        assert consistent(resume_point(tmp_path)) == 0
    assert (
        f"the latest checkpoint cannot be read ({state}: " in caplog.text
        and f"resuming from {tmp_path / 'previous'} (epoch 1)" in caplog.text
    )


# --- through the command line: refusals that need no training ------------------------------------------------


def recipe_file(folder: Path, model_dir: Path, **train: object) -> Path:
    text = {"model": {"name": str(model_dir), "image_size": 256}, "lora": {"r": 4, "alpha": 8}, "train": TRAIN | train}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(text))
    return path


@pytest.mark.injected_fault
def test_resume_with_both_checkpoints_unreadable_exits_3_naming_both(
    tmp_path: Path, small_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    publish(run, epoch_writer(0), improved=True)
    publish(run, epoch_writer(1), improved=False)
    for name in ("latest", "previous"):
        (run / name / STATE_FILE).write_bytes(b"PK\x03\x04 torn")
    args = ["train", "--config", str(recipe_file(tmp_path, tmp_path)), "--dataset", str(small_dataset), "--out", str(run), "--resume"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert f"--resume: no readable checkpoint in {run}: {run / 'latest' / STATE_FILE}: " in err
    assert f"; {run / 'previous' / STATE_FILE}: " in err


@pytest.mark.hostile_input
@pytest.mark.parametrize("case", ["missing-folder", "foreign-folder", "occupied-without-resume"])
def test_train_refuses_a_run_folder_it_cannot_use(
    tmp_path: Path, small_dataset: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    run = tmp_path / "run"
    if case != "missing-folder":
        run.mkdir()
        (run / "notes.txt").write_text("someone else's files")
    resume = ["--resume"] if case != "occupied-without-resume" else []
    args = ["train", "--config", str(recipe_file(tmp_path, tmp_path)), "--dataset", str(small_dataset), "--out", str(run), *resume]
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = f"--resume: no checkpoint at {run / 'latest' / STATE_FILE}" if resume else f"{run} already holds a run; pass --resume"
    assert expected in err
    assert (run / "notes.txt").read_text() == "someone else's files" if case != "missing-folder" else not run.exists()


# --- a real run: a torn trainer state falls back and still ends where an uninterrupted run ends -------------------


def same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same training: final and best weights, per-epoch losses, best epoch."""
    for folder in ("latest", "best"):
        left, right = load_file(a / folder / ADAPTER), load_file(b / folder / ADAPTER)
        assert left.keys() == right.keys() and all(torch.allclose(left[k], right[k], atol=1e-6) for k in left), folder
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert [h["train_loss"] for h in ma["history"]] == pytest.approx([h["train_loss"] for h in mb["history"]], rel=1e-6)
    assert ma["best_epoch"] == mb["best_epoch"] and ma["epochs_run"] == mb["epochs_run"]


@pytest.mark.slow
@pytest.mark.injected_fault
def test_a_truncated_trainer_state_falls_back_and_the_resumed_run_matches(
    random_tiny_dir: Path, small_dataset: Path, tmp_path: Path
) -> None:
    config = InspectConfig(model=ModelSection(name=str(random_tiny_dir), image_size=256), lora=LoraSection(r=4, alpha=8),
                           train=TrainSection(**(TRAIN | {"epochs": 2})))  # fmt: skip
    run = tmp_path / "run"
    train(config, small_dataset, run)
    straight = tmp_path / "straight"
    for name in ("latest", "best"):
        (straight / name).mkdir(parents=True)
        (straight / name / ADAPTER).write_bytes((run / name / ADAPTER).read_bytes())
    (straight / "metrics.json").write_text((run / "metrics.json").read_text())
    state = run / "latest" / STATE_FILE
    state.write_bytes(state.read_bytes()[:1000])
    resumed = train(config, small_dataset, run, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    same_run(run, straight)


# --- kill -9 of `inspect-core train` at random points, then --resume ----------------------------------------------


def cli_env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": "0"}


def start_train(recipe: Path, dataset: Path, out: Path, resume: bool = False) -> subprocess.Popen:
    args = [str(EXECUTABLE), "train", "--config", str(recipe), "--dataset", str(dataset), "--out", str(out)]
    return subprocess.Popen(args + (["--resume"] if resume else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())  # fmt: skip


def finish(recipe: Path, dataset: Path, out: Path) -> subprocess.CompletedProcess:
    """After a kill: ``--resume`` where the run folder exists (a folder without a checkpoint starts over), else a plain rerun."""
    args = [str(EXECUTABLE), "train", "--config", str(recipe), "--dataset", str(dataset), "--out", str(out)]
    done = subprocess.run(args + (["--resume"] if out.exists() else []), capture_output=True, text=True, env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def straight_cli_run(random_tiny_dir: Path, small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """An uninterrupted ``inspect-core train`` (into a folder whose name has brackets): the oracle, and how long it took."""
    root = tmp_path_factory.mktemp("straight")
    recipe = recipe_file(root, random_tiny_dir)
    out = root / "run [1]"
    started = time.monotonic()
    process = start_train(recipe, small_dataset, out)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert f"checkpoints: {out / 'best'} (best), {out / 'latest'} (latest)" in " ".join(stdout.split()), stdout  # brackets kept
    return recipe, out, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.injected_fault
@pytest.mark.parametrize("seed", [11, 23, 37])
def test_kill_9_at_a_random_moment_then_resume_matches_an_uninterrupted_run(
    straight_cli_run: tuple[Path, Path, float], small_dataset: Path, tmp_path: Path, seed: int
) -> None:
    recipe, straight, seconds = straight_cli_run
    out = tmp_path / "run"
    process = start_train(recipe, small_dataset, out)
    time.sleep(random.Random(seed).uniform(0.3, 0.95) * seconds)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    finish(recipe, small_dataset, out)
    same_run(out, straight)


@pytest.mark.slow
@pytest.mark.injected_fault
@pytest.mark.parametrize("write", [1, 2], ids=["first-checkpoint", "second-checkpoint"])
def test_kill_9_while_a_checkpoint_is_being_written_then_resume_matches(
    straight_cli_run: tuple[Path, Path, float], small_dataset: Path, tmp_path: Path, write: int
) -> None:
    recipe, straight, _seconds = straight_cli_run
    out = tmp_path / "run"
    process = start_train(recipe, small_dataset, out)
    staging = out / "latest.partial"
    while process.poll() is None and not (staging.exists() and (write == 1 or (out / "latest").exists())):
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert staging.exists(), "the kill did not land inside a checkpoint write"
    finish(recipe, small_dataset, out)
    same_run(out, straight)
    assert not staging.exists()


# --- a damaged calibration.json: a clear refusal naming the file, before anything is written ------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize("content", ['{"overall": {"method": "platt", "a": "steep"}}', '{"overall": '], ids=["bad-value", "truncated"])
def test_a_corrupt_calibration_file_stops_merge_and_evaluate_naming_it(
    random_tiny_dir: Path, small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from inspect_core import pipeline
    from inspect_core.errors import BadInputError
    from inspect_core.model.calibration import CALIBRATION_FILE
    from inspect_core.model.lora import apply_strategy
    from inspect_core.model.trained_model import save_checkpoint

    model = apply_strategy(Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir), LoraSection(r=4, alpha=8))
    save_checkpoint(model, AutoProcessor.from_pretrained(random_tiny_dir), tmp_path / "ckpt", str(random_tiny_dir), "lora", ["hole"])
    damaged = tmp_path / "ckpt" / CALIBRATION_FILE
    damaged.write_text(content)
    assert main(["merge", "--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "merged")]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert f"{damaged}: not a calibration file inspect-core can read" in err and "calibrate again" in err
    assert not (tmp_path / "merged").exists()
    config = InspectConfig(model=ModelSection(name=str(random_tiny_dir), image_size=256), train=TrainSection(**TRAIN))
    with pytest.raises(BadInputError, match="not a calibration file"):
        pipeline.evaluate(config, model=tmp_path / "ckpt", dataset=small_dataset, split="test")
    assert damaged.read_text() == content  # refused, not overwritten
