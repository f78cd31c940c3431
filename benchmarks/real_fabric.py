"""Real-data figure: the plant's workflow on real fabric photographs, end to end.

Takes the Roboflow fabric set (22 real 416 px photographs, YOLO labels: Hole, Knot, Stain) from
``../shared/real_fabric`` by path, builds a mixed-task dataset with flipped training copies, scores
the shipped tiny base on the held-out images, fine-tunes it with LoRA (the demo recipe, more
epochs), scores the fine-tuned model on the same held-out images, merges the adapter, scores the
held-out images into a SQLite store and reads the per-class report back. Class names are lowercased
to the base model's vocabulary (``Hole`` -> ``hole``). A tiny set: the figure says what 13 training
images give a 4.8M-parameter model, not what a plant's Florence-2-base would reach. Writes
``benchmarks/results/real_fabric.json``.

    python benchmarks/real_fabric.py [--epochs 10] [--source ../shared/real_fabric/roboflow_fabric_yolo]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info

from inspect_core.config import SplitRatios, load_config
from inspect_core.data.dataset_builder import build_dataset
from inspect_core.data.importers import import_dataset
from inspect_core.inference.scoring import score_images
from inspect_core.model.trained_model import load_trained, merge_checkpoint
from inspect_core.store import ReportFilter, class_summary, open_store
from inspect_core.training.evaluation import evaluate_split
from inspect_core.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "real_fabric" / "roboflow_fabric_yolo"
RESULTS = Path(__file__).resolve().parent / "results" / "real_fabric.json"


def detection_summary(report) -> dict:
    detection = report.detection
    return {
        "images": report.images,
        "map50": round(detection.map50, 4),
        "map50_95": round(detection.map50_95, 4),
        "per_class_ap50": {name: round(v["ap50"], 4) for name, v in detection.per_class.items()},
        "instances": {name: v["instances"] for name, v in detection.per_class.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"{args.source}: no real fabric set here (it lives in ../shared/real_fabric beside the checkout)")
    recipe = load_config(REPO / "configs" / "demo.yaml")
    dataset_cfg = recipe.dataset.model_copy(update={"splits": SplitRatios(train=0.6, valid=0.2, test=0.2)})
    cfg = recipe.model_copy(update={"dataset": dataset_cfg, "train": recipe.train.model_copy(update={"epochs": args.epochs})})
    imported = import_dataset(args.source)
    lowered = [replace(image, objects=tuple(replace(o, label=o.label.lower()) for o in image.objects)) for image in imported.images]
    imported = replace(imported, images=lowered, classes=sorted({name.lower() for name in imported.classes}))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = build_dataset(imported, work / "dataset", cfg.dataset, cfg.augment)
        test_split = (work / "dataset", "test", cfg.train.batch_size, cfg.train.max_new_tokens)
        base = evaluate_split(*load_trained(cfg.model.name), *test_split)
        started = time.perf_counter()
        result = train(cfg, work / "dataset", work / "train")
        train_s = time.perf_counter() - started
        tuned = evaluate_split(*load_trained(work / "train" / "best"), *test_split)
        merged = merge_checkpoint(work / "train" / "best", work / "merged")
        store = open_store(f"sqlite:///{work / 'results.db'}")
        test_images = sorted((work / "dataset" / "test").glob("*.jpg"))
        scored = score_images(test_images, str(merged), store, cfg.score)
        report = class_summary(store, ReportFilter())
    summary = {
        "benchmark": "real_fabric",
        "machine": machine_info(),
        "source": str(args.source.relative_to(REPO.parent)) if args.source.is_relative_to(REPO.parent) else str(args.source),
        "split_images": {split: stats.images for split, stats in built.splits.items()},
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_seconds": round(train_s, 1),
        "base_test": detection_summary(base),
        "fine_tuned_test": detection_summary(tuned),
        "scored": {"images": scored.scored, "detections": scored.detections, "per_class": scored.per_class},
        "report_class_summary": json.loads(report.to_json(orient="records")),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
