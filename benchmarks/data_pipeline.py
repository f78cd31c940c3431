"""Data-pipeline benchmark: import + augment + build on 1024x1024 JPEGs (target >= 100 images/s).

Generates a LabelImg VOC set of synthetic fabric (not timed), then times the strict import (full
decode check + content hash of every image) and the build (copy, offline horizontal + vertical
flips of training images, mixed-task JSONL). Writes ``benchmarks/results/data_pipeline.json``.

    python benchmarks/data_pipeline.py [--count 300] [--size 1024] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info

from inspect_core.config import AugmentSection, DatasetSection
from inspect_core.data.dataset_builder import build_dataset
from inspect_core.data.importers import import_dataset
from inspect_core.data.synthetic_fabric import write_voc_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "data_pipeline.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        write_voc_dataset(source, count=args.count, seed=123, size=args.size)

        start = time.perf_counter()
        result = import_dataset(source, "voc")
        import_s = time.perf_counter() - start

        start = time.perf_counter()
        summary = build_dataset(result, Path(tmp) / "built", DatasetSection(workers=args.workers), AugmentSection(offline=True))
        build_s = time.perf_counter() - start

    written = sum(s.images for s in summary.splits.values())
    total_s = import_s + build_s
    report = {
        "benchmark": "data_pipeline",
        "machine": machine_info(),
        "source_images": args.count,
        "image_size": args.size,
        "images_written": written,
        "objects": sum(len(i.objects) for i in result.images),
        "import_s": round(import_s, 3),
        "build_s": round(build_s, 3),
        "total_s": round(total_s, 3),
        "source_images_per_s": round(args.count / total_s, 1),
        "written_images_per_s": round(written / total_s, 1),
        "target_images_per_s": 100,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
