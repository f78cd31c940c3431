"""Hostile builds (issue 12): an output over the source, label text a target cannot carry, kill -9 at random points.

Nothing good is lost (sources and an existing dataset stay byte-identical), nothing is left behind
(no worker outlives a killed build, the next build removes the dead build's staging folder).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from inspect_core.config import DatasetSection
from inspect_core.data.build_output import reap_leftovers
from inspect_core.data.importers import import_dataset
from inspect_core.data.worker_lifetime import die_with_parent
from tests.conftest import write_image
from tests.hostile.build_helpers import build, digest, existing_dataset

REPO = Path(__file__).resolve().parents[2]
XML = """<annotation><filename>{name}.jpg</filename>
<object><name>{label}</name><description>{label} near the selvedge</description>
<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>"""


def voc_source(root: Path, count: int, size: tuple[int, int] = (96, 64)) -> Path:
    width, height = size
    for index in range(count):
        x1, y1 = 3 + index % 7, 4 + index % 5
        x2, y2 = x1 + width // 3, y1 + height // 3
        write_image(root / f"img_{index:03d}.jpg", width, height, seed=index, rects=[(x1, y1, x2, y2)])
        label = ("hole", "stain", "broken end")[index % 3]
        (root / f"img_{index:03d}.xml").write_text(XML.format(name=f"img_{index:03d}", label=label, x1=x1, y1=y1, x2=x2, y2=y2))
    return root


# --- 1. --out over the source ----------------------------------------------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize("where", ["same", "inside", "parent", "link-to-source"])
def test_out_over_the_source_is_refused_and_the_source_survives(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    src = voc_source(tmp_path / "data" / "src", 4)
    before = digest(tmp_path / "data")
    out = {"same": src, "inside": src / "dataset", "parent": tmp_path / "data", "link-to-source": tmp_path / "link"}[where]
    if where == "link-to-source":
        os.symlink(src, out)
    code, message = build(capsys, src, out)
    assert code == 2, message
    assert f"--out {out}" in message and f"--images {src}" in message and "overwrite labels" in message
    assert digest(tmp_path / "data") == before
    assert not list(out.parent.glob(f".{out.name}.*"))


# --- 2. label text round-trips through a built dataset ------------------------------------------------------


def _objects(result) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    by_name = {}
    for image in result.images:
        by_name[image.image_path.name] = sorted((o.label, tuple(round(v / s, 2) for v, s in zip(o.box, (image.width, image.height) * 2)))
                                                for o in image.objects)
    return by_name


@pytest.mark.hostile_input
def test_build_then_import_the_built_dataset_gives_the_same_classes_and_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = voc_source(tmp_path / "src", 9)
    code, message = build(capsys, src, tmp_path / "out", "--no-augment")
    assert code == 0, message
    original, rebuilt = import_dataset(src), import_dataset(tmp_path / "out")
    assert rebuilt.format == "jsonl" and sorted(rebuilt.classes) == sorted(original.classes) == ["broken end", "hole", "stain"]
    assert _objects(rebuilt) == _objects(original)  # boxes equal up to the 1/1000 loc quantisation
    code, message = build(capsys, tmp_path / "out", tmp_path / "again", "--no-augment")  # the tool accepts its own output
    assert code == 0, message


# --- 5. leftovers: stale staging folders, workers of a killed build ---------------------------------------------


def _dead_pid() -> int:
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait()
    return probe.pid


@pytest.mark.hostile_input
def test_stale_partial_folders_are_removed_and_live_ones_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = voc_source(tmp_path / "src", 3)
    dead, live = tmp_path / f".out.partial-{_dead_pid()}", tmp_path / f".out.partial-{os.getpid()}0"
    (dead / "train").mkdir(parents=True)
    other = tmp_path / f".other.partial-{_dead_pid()}"  # another output's leftovers are not ours to remove
    other.mkdir()
    live.mkdir()
    os.utime(live)
    code, message = build(capsys, src, tmp_path / "out")
    assert code == 0, message
    assert not dead.exists() and other.exists()
    assert live.exists() == psutil.pid_exists(int(live.name.rsplit("-", 1)[1]))


@pytest.mark.hostile_input
def test_a_dataset_retired_by_a_killed_swap_is_restored(tmp_path: Path) -> None:
    """Killed between moving the old dataset aside and moving the new one in: the old one comes back."""
    previous = existing_dataset(tmp_path / "staging-src")
    retired = tmp_path / f".out.old-{_dead_pid()}"
    (tmp_path / "staging-src").rename(retired)
    reap_leftovers(tmp_path / "out")
    assert digest(tmp_path / "out") == previous and not retired.exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from inspect_core.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still running (not zombies) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images that a build with flips runs for seconds, so a kill lands inside it."""
    return voc_source(tmp_path_factory.mktemp("kill") / "src", 64, size=(800, 600))


def _old_or_complete(out: Path, previous: dict[str, str]) -> bool:
    """The output is the previous dataset untouched, or (a kill after the final rename) the complete new one: never a mix."""
    if digest(out) == previous:
        return True
    manifest = json.loads((out / "dataset.json").read_text())
    return sum(s["source_images"] for s in manifest["splits"].values()) == 64 and all(
        (out / split / json.loads(line)["image"]).is_file() for split in ("train", "valid", "test")
        for line in (out / split / "annotations.jsonl").read_text().splitlines()
    )


@pytest.mark.injected_fault
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_during_the_build_leaves_no_worker_and_the_old_dataset(tmp_path: Path, big_source: Path, seed: int,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    previous = existing_dataset(out)
    args = ["dataset", "build", "--images", str(big_source), "--out", str(out), "--overwrite", "--augment", "--set", "dataset.workers=2"]
    proc = subprocess.Popen(_cli(*args), cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        try:
            workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))  # a random point of the parallel stage
    assert workers and proc.poll() is None, f"the build ended before the kill: {proc.stderr.read().decode()[-400:] if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)  # the group's leader only: its workers must notice by themselves
    proc.wait()
    assert _gone(workers, timeout=5.0) == [], "build workers outlived their killed parent"
    assert _old_or_complete(out, previous)
    stale = tmp_path / f".out.partial-{proc.pid}"
    code, message = build(capsys, big_source, out, "--no-augment", "--set", "dataset.workers=1")
    assert code == 0, message
    assert not stale.exists() and not list(tmp_path.glob(".out.*"))
    assert json.loads((out / "dataset.json").read_text())["splits"]["train"]["source_images"] > 0


@pytest.mark.injected_fault
def test_kill_9_at_a_random_early_point_keeps_the_old_dataset(tmp_path: Path, big_source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed while importing or starting workers (before anything is renamed)."""
    out = tmp_path / "out"
    previous = existing_dataset(out)
    args = ["dataset", "build", "--images", str(big_source), "--out", str(out), "--overwrite", "--augment", "--set", "dataset.workers=2"]
    proc = subprocess.Popen(_cli(*args), cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(7).uniform(1.0, 3.0))
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone(children, timeout=5.0) == []
    assert _old_or_complete(out, previous)
    code, message = build(capsys, big_source, out, "--no-augment", "--set", "dataset.workers=1")
    assert code == 0, message and not list(tmp_path.glob(".out.*"))


_ORPHAN = """
import os, sys, time, multiprocessing
from inspect_core.data.worker_lifetime import die_with_parent
def child(parent, use_prctl):
    die_with_parent(parent, use_prctl=use_prctl)
    time.sleep(120)
if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    worker = ctx.Process(target=child, args=(os.getpid(), sys.argv[1] == "prctl"))
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.injected_fault
@pytest.mark.parametrize("mechanism", ["prctl", "watchdog"])
def test_a_worker_dies_with_its_killed_parent(mechanism: str) -> None:
    """Both ways a worker notices: the kernel's death signal, and the parent-pid watchdog where prctl is missing."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN, mechanism], cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    time.sleep(0.3)
    assert psutil.pid_exists(worker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone([worker], timeout=3.0) == []


def test_die_with_parent_exits_at_once_when_the_parent_is_already_gone() -> None:
    code = subprocess.call([sys.executable, "-c", "from inspect_core.data.worker_lifetime import die_with_parent; die_with_parent(1)"],
                           cwd=REPO)
    assert code == 1
    assert callable(die_with_parent) and DatasetSection().workers == 0
