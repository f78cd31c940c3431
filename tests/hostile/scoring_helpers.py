"""Helpers of the scoring and ingest hostile tests: good frames, hostile files, the CLI in-process, and SQL counts as the oracle."""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import strategies as st

from inspect_core.cli import main
from tests.conftest import write_image

GOOD = 5  # good frames beside every hostile file


def good_frames(folder: Path, count: int = GOOD, seed: int = 0) -> list[Path]:
    """``count`` distinct 64 px frames, each with one bright defect the detector finds."""
    return [write_image(folder / f"good_{i}.png", 64, 64, seed=seed * 100 + i, rects=[(10, 10, 30, 30)]) for i in range(count)]


def bytes_path(folder: Path, name: bytes) -> bytes:
    """A path whose file name is raw bytes (not necessarily UTF-8), as a camera PC on a Latin-1 share writes them."""
    return os.path.join(os.fsencode(folder), name)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``inspect-core ARGS`` in this process: exit code, stdout, and stderr with its line wrapping undone."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def score_args(images: Path, db: Path, *extra: str) -> list[str]:
    return ["score", "--images", str(images), "--model", "tiny", "--db", f"sqlite:///{db}", "--set", "score.num_workers=0", *extra]


def sql(db: Path, query: str) -> list[tuple]:
    """A query on the store file with plain sqlite3: the independent oracle of what was stored."""
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


def stored_counts(db: Path) -> dict[str, int]:
    """Scores, distinct scored images, images scored more than once, detections and quarantine rows."""
    return {
        "scores": sql(db, "SELECT count(*) FROM image_scores")[0][0],
        "images": sql(db, "SELECT count(DISTINCT image_id) FROM image_scores")[0][0],
        "twice": sql(
            db, "SELECT count(*) FROM (SELECT image_id FROM image_scores GROUP BY image_id, model_version_id HAVING count(*) > 1)"
        )[0][0],
        "detections": sql(db, "SELECT count(*) FROM detections")[0][0],
        "quarantined": sql(db, "SELECT count(*) FROM quarantine")[0][0],
    }


def scored_paths(db: Path) -> set[str]:
    return {row[0] for row in sql(db, "SELECT i.path FROM images i JOIN image_scores s ON s.image_id = i.id")}


BAD_NAMES = [
    pytest.param(b"bad_\xff_name.png", "bad_\\xff_name.png", id="lone-0xff", marks=pytest.mark.hostile_input),
    pytest.param(b"caf\xe9.png", "caf\\xe9.png", id="latin-1", marks=pytest.mark.hostile_input),
    pytest.param(b"cut_\xc3.png", "cut_\\xc3.png", id="truncated-utf8-sequence", marks=pytest.mark.hostile_input),
    pytest.param(b"sur_\xed\xa0\x80.png", "sur_\\xed\\xa0\\x80.png", id="encoded-surrogate", marks=pytest.mark.hostile_input),
    pytest.param(b"over_\xc0\xaf.png", "over_\\xc0\\xaf.png", id="overlong-slash", marks=pytest.mark.hostile_input),
    pytest.param(b"\x80\x81\x82.jpg", "\\x80\\x81\\x82.jpg", id="only-continuation-bytes", marks=pytest.mark.hostile_input),
]


def png_of_size(path: Path, width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> Path:
    """A valid PNG of any size from a constant row, streamed through zlib: megabytes on disk at most, whatever the pixels."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + bytes((width * channels * bit_depth + 7) // 8)
    compressor, body = zlib.compressobj(9), []
    block = row * max(1, (1 << 20) // len(row))
    rows_per_block = len(block) // len(row)
    for start in range(0, height, rows_per_block):
        body.append(compressor.compress(block[: len(row) * min(rows_per_block, height - start)]))
    body.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    palette = chunk(b"PLTE", bytes(3)) if colour_type == 3 else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + palette + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b""))
    return path


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A small real JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(write_image(path, 16, 16, seed=3).read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def _seed_image(kind: str) -> bytes:
    import cv2
    import numpy as np

    pixels = np.random.default_rng(7).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    ok, data = cv2.imencode(f".{kind}", pixels)
    assert ok
    return data.tobytes()


SEEDS = {"png": _seed_image("png"), "jpg": _seed_image("jpg")}


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file named like an image whose bytes are random, cut short, or a real image with bytes changed."""
    kind = draw(st.sampled_from(["png", "jpg"]))
    seed = SEEDS[kind]
    how = draw(st.sampled_from(["random", "truncated", "mutated", "header-only", "spliced"]))
    if how == "random":
        data = draw(st.binary(min_size=0, max_size=2048))
    elif how == "truncated":
        data = seed[: draw(st.integers(0, len(seed) - 1))]
    elif how == "header-only":
        data = seed[: draw(st.integers(8, 64))] + draw(st.binary(max_size=64))
    elif how == "spliced":  # a PNG body under a JPEG name and the other way round, cut anywhere
        other = SEEDS["jpg" if kind == "png" else "png"]
        data = other[: draw(st.integers(1, len(other)))]
    else:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 12))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    return kind, data



def write_fuzz_files(frames: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    """Write generated hostile files beside the good frames; their paths, in order."""
    written = []
    for i, (kind, data) in enumerate(files):
        written.append(frames / f"fuzz_{i}.{kind}")
        written[-1].write_bytes(data)
    return written
