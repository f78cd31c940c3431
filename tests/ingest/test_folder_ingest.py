import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.ingest import folder as folder_ingest
from inspect_core.ingest.folder import FolderWatcher
from inspect_core.store import ImageRecord, QuarantineEntry, Source, open_store
from tests.conftest import write_image

MTIME = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)


def images(engine: Engine) -> list[ImageRecord]:
    with Session(engine) as session:
        return list(session.exec(select(ImageRecord).order_by(ImageRecord.path)).all())


def quarantined(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {Path(q.path).name: q.reason for q in session.exec(select(QuarantineEntry).where(QuarantineEntry.stage == "ingest")).all()}


def watcher(folder: Path, url: str, **kwargs: object) -> FolderWatcher:
    return FolderWatcher(folder, open_store(url), "cam-3", "L2", **{"settle_seconds": 2.0, **kwargs})


def test_a_growing_file_is_read_only_once_it_has_settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    data = write_image(tmp_path / "full.png", seed=1).read_bytes()
    inbox.mkdir()
    (inbox / "frame.png").write_bytes(data[: len(data) // 2])
    reads: list[str] = []
    probe = folder_ingest.probe_image
    monkeypatch.setattr(folder_ingest, "probe_image", lambda path: reads.append(path.name) or probe(path))
    watch = watcher(inbox, f"sqlite:///{tmp_path / 'r.db'}")
    assert watch.poll_once(now=0).waiting == [str(inbox / "frame.png")]
    assert watch.poll_once(now=1.9).waiting and reads == []  # not settled yet
    with (inbox / "frame.png").open("ab") as handle:  # the copy goes on
        handle.write(data[len(data) // 2 :])
    assert watch.poll_once(now=2.5).waiting and reads == []  # changed: the settle time starts again
    assert watch.poll_once(now=4.0).waiting and reads == []
    report = watch.poll_once(now=4.5)
    assert report.registered == [str(inbox / "frame.png")] and report.waiting == [] and reads == ["frame.png"]
    assert watch.poll_once(now=10).registered == [] and reads == ["frame.png"]  # seen, unchanged: not read again
    assert len(images(watch.engine)) == 1 and not report.quarantined


def test_a_recopied_file_is_a_duplicate(store_url: str, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_image(inbox / "a.png", seed=1)
    write_image(inbox / "b.png", seed=2)
    watch = watcher(inbox, store_url, settle_seconds=0)
    assert len(watch.poll_once().registered) == 2
    shutil.copy(inbox / "a.png", inbox / "a-copy.png")
    shutil.copy(inbox / "b.png", inbox / "b-again.png")
    shutil.copy(inbox / "b.png", inbox / "b-third.png")
    report = watch.poll_once()
    assert report.registered == [] and sorted(Path(p).name for p in report.duplicates) == ["a-copy.png", "b-again.png", "b-third.png"]
    again = watcher(inbox, store_url, settle_seconds=0).poll_once()  # a restarted watcher: nothing new either
    assert again.registered == [] and len(again.duplicates) == 5
    stored = images(watch.engine)
    assert [Path(i.path).name for i in stored] == ["a.png", "b.png"] and stored[0].path == str((inbox / "a.png").resolve())
    with Session(watch.engine) as session:
        source = session.get(Source, stored[0].source_id)
    assert (source.camera, source.line) == ("cam-3", "L2") and (stored[0].width, stored[0].height) == (64, 48)


def test_unreadable_files_are_quarantined_once_with_their_reason(store_url: str, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    png = write_image(inbox / "good.png").read_bytes()
    (inbox / "empty.png").write_bytes(b"")
    (inbox / "truncated.png").write_bytes(png[: len(png) // 2])
    (inbox / "text.jpg").write_text("not a jpeg")
    (inbox / "notes.txt").write_text("shift notes")  # a sidecar: skipped, not quarantined
    (inbox / "scan.raw").write_bytes(b"\x00" * 64)
    (inbox / ".frame.png.tmp").write_bytes(png[:10])  # a writer's temp file: not a candidate
    (inbox / "copy.png.part").write_bytes(png[:10])
    report = watcher(inbox, store_url, settle_seconds=0).poll_once()
    assert [Path(p).name for p in report.registered] == ["good.png"]
    expected = {
        "empty.png": "image empty.png is an empty file",
        "truncated.png": "cannot decode image truncated.png: image file is truncated",
        "scan.raw": "not an image file (suffix '.raw'; images are .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp)",
    }
    engine = open_store(store_url)
    reasons = quarantined(engine)
    assert {k: v for k, v in reasons.items() if k != "text.jpg"} == expected
    assert reasons["text.jpg"].startswith("cannot decode image text.jpg")
    assert {Path(p).name for p in report.quarantined} == set(reasons)
    watcher(inbox, store_url, settle_seconds=0).poll_once()  # restarted: the same files, the same reasons, no new rows
    assert len(quarantined(engine)) == 4
    with Session(engine) as session:
        assert len(session.exec(select(QuarantineEntry)).all()) == 4


def test_originals_stay_put_unless_an_archive_is_configured(store_url: str, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for name in ("a.png", "line2/b.png"):
        write_image(inbox / name, seed=len(name))
    (inbox / "bad.png").write_bytes(b"")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in inbox.rglob("*") if p.is_file()}
    watcher(inbox, store_url, settle_seconds=0).poll_once()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in inbox.rglob("*") if p.is_file()} == before

    archive = inbox / "done"  # inside the watched folder: never scanned
    shutil.copy(inbox / "a.png", inbox / "a-copy.png")
    write_image(inbox / "c.png", seed=9)
    report = watcher(inbox, store_url, settle_seconds=0, archive_dir=archive).poll_once()
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file()) == [
        "done/a-copy.png", "done/a.png", "done/c.png", "done/line2/b.png", "done/quarantine/bad.png",
    ]  # fmt: skip
    assert report.archived[str(inbox.resolve() / "c.png")] == str(archive.resolve() / "c.png")
    engine = open_store(store_url)
    assert str(archive.resolve() / "c.png") in {i.path for i in images(engine)}  # the store points where the file is now
    assert str(archive.resolve() / "quarantine" / "bad.png") in {q.path for q in Session(engine).exec(select(QuarantineEntry))}
    write_image(inbox / "c.png", seed=10)  # same name, new content: the archived c.png is not overwritten
    watcher(inbox, store_url, settle_seconds=0, archive_dir=archive).poll_once()
    assert (archive / "c-1.png").is_file() and str(archive.resolve() / "c-1.png") in {i.path for i in images(engine)}


def test_capture_time_comes_from_the_frame_name_else_the_mtime(store_url: str, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_image(inbox / "cam-3_L2_20261122T044543_786000Z.png", seed=1)
    plain = write_image(inbox / "scan_0001.png", seed=2)
    os.utime(plain, (MTIME.timestamp(), MTIME.timestamp()))
    watch = watcher(inbox, store_url, settle_seconds=0)
    watch.poll_once()
    times = {Path(i.path).name: i.captured_at for i in images(watch.engine)}
    assert times == {
        "cam-3_L2_20261122T044543_786000Z.png": datetime(2026, 11, 22, 4, 45, 43, 786000, tzinfo=timezone.utc),
        "scan_0001.png": MTIME,
    }


def test_watch_polls_forgets_vanished_files_and_respects_recursive(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_image(inbox / "a.png", seed=1)
    write_image(inbox / "sub" / "b.png", seed=2)
    watch = watcher(inbox, f"sqlite:///{tmp_path / 'r.db'}", settle_seconds=0, recursive=False)
    seen: list[int] = []
    totals = watch.watch(poll_seconds=0, max_polls=3, on_poll=lambda r: seen.append(len(r.registered)))
    assert (totals.polls, totals.registered, seen) == (3, 1, [1, 0, 0])
    (inbox / "a.png").unlink()
    assert watch.watch(poll_seconds=0, stop=lambda: True).polls == 1 and watch._seen == {}


def test_cli_ingests_a_folder_once_as_json(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_image(inbox / "a.png", seed=1)
    shutil.copy(inbox / "a.png", inbox / "b.png")
    (inbox / "c.png").write_bytes(b"")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["ingest", "folder", "--images", str(inbox), "--db", db, "--camera", "cam-3", "--line", "L2", "--once"]
    result = CliRunner().invoke(app, [*args, "--settle-seconds", "0.2", "--poll-seconds", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["registered"]) == 1 and len(report["duplicates"]) == 1 and report["waiting"] == []
    assert list(report["quarantined"].values()) == ["image c.png is an empty file"]
    helped = CliRunner().invoke(app, ["ingest", "folder", "--help"])
    assert all(option in helped.output for option in ("--images", "--db", "--camera", "--line", "--once", "--archive-dir", "--json"))
    missing = CliRunner().invoke(app, ["ingest", "folder", "--images", str(tmp_path / "nope"), "--db", db, "--once"])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
