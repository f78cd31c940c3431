"""Real-data figure: what fine-tuning the embedded base on tens of real fabric photographs gives, held out.

Takes the Roboflow fabric set (22 real 416 px photographs, YOLO labels: Hole, Knot, Stain) from
``../shared/real_fabric`` by path (never copied), lowercases the class names to the base model's
vocabulary (``Hole`` -> ``hole``), splits it once (``--split``, seeded: every variant trains, selects
and is tested on the same images) and reports, on the held-out test part, for the shipped tiny base
and for each fine-tuning variant:

- class-agnostic recall at IoU 0.5 (a true defect counts as found when any detection overlaps it by
  IoU >= 0.5, whatever class either names; all emitted detections), with the same matching's precision;
- class-aware mAP@50 and mAP@50:95 (COCO, real confidences) and AP@50 per class.

Variants (``--variants``, each trained under ``train.max_minutes`` = ``--minutes``):

- ``recipe``: ``configs/real-fewshot.yaml`` as it is (full fine-tuning, ``<OD>`` only, online
  flips, rotation by 90 degrees, crop, zoom, colour jitter and copy-paste of defect crops);
- ``lora``: the same with LoRA adapters (``lora+vision``, r 16) at a LoRA learning rate;
- ``flips-only``: the recipe with the new augmentations off (online flips only);
- ``all-tasks``: the recipe training ``<OD>``, dense captions and grounding (sequential order).

The recipe's best checkpoint is then merged, its held-out images scored into a SQLite store and the
per-class report read back (the plant's workflow end to end). A tiny set: 7 held-out images, about
ten defects, so one defect moves recall by about 0.1; the figure says what tens of images give a
4.8M-parameter model, not what a plant's Florence-2-base would reach. Writes
``benchmarks/results/real_fabric.json``.

    nice -n 10 python benchmarks/real_fabric.py [--minutes 6] [--variants recipe,lora,flips-only,all-tasks] [--base DIR --out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info

from inspect_core.config import InspectConfig, load_recipe
from inspect_core.data.dataset_builder import build_dataset
from inspect_core.data.importers import ImportResult, import_dataset
from inspect_core.inference.scoring import score_images
from inspect_core.model.factory import resolve_model_source
from inspect_core.model.trained_model import load_trained, merge_checkpoint
from inspect_core.store import ReportFilter, class_summary, open_store
from inspect_core.training.evaluation import EvaluationReport, evaluate_split
from inspect_core.training.metrics import agnostic_recall
from inspect_core.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "real_fabric" / "roboflow_fabric_yolo"
RECIPE = REPO / "configs" / "real-fewshot.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "real_fabric.json"
NO_EXTRA_AUGMENT = {"augment.rotate90": False, "augment.color_jitter": 0.0, "augment.crop": 0.0, "augment.scale": 0.0,
                    "augment.copy_paste": 0.0}  # fmt: skip
VARIANTS: dict[str, dict[str, object]] = {
    "recipe": {},
    "lora": {"lora.strategy": "lora+vision", "lora.r": 16, "lora.alpha": 32, "train.lr": 1.0e-3},
    "flips-only": NO_EXTRA_AUGMENT,
    "all-tasks": {"dataset.tasks": ["od", "dense", "grounding"]},
}


FLOORS = (0.05, 0.1, 0.15, 0.2, 0.3)  # confidence floors at which the found defects are counted again


def held_out(report: EvaluationReport) -> dict:
    """The test-split figures: class-agnostic recall at IoU 0.5 first, then class-aware mAP."""
    detection, od = report.detection, report.od
    recall = agnostic_recall(od.truth, od.predictions, iou=0.5)
    return {
        "images": report.images,
        "recall50_agnostic": round(recall["recall"], 4),
        "precision50_agnostic": round(recall["precision"], 4),
        "found": recall["found"],
        "objects": recall["objects"],
        "detections": recall["detections"],
        "max_score": round(max((d.score for image in od.predictions for d in image), default=0.0), 4),
        # where an operating threshold would have to sit: the defects still found at each confidence floor
        "found_at_min_score": {f"{f:g}": agnostic_recall(od.truth, od.predictions, 0.5, f)["found"] for f in FLOORS},
        "detections_at_min_score": {f"{f:g}": agnostic_recall(od.truth, od.predictions, 0.5, f)["detections"] for f in FLOORS},
        "map50": round(detection.map50, 4),
        "map50_95": round(detection.map50_95, 4),
        "per_class_ap50": {name: round(v["ap50"], 4) for name, v in detection.per_class.items()},
        "instances": {name: v["instances"] for name, v in detection.per_class.items()},
    }


def _sha256(path: Path) -> str:
    """Which base was measured: the embedded model may be retrained, and the figures belong to one file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def lowercased(imported: ImportResult) -> ImportResult:
    images = [replace(image, objects=tuple(replace(o, label=o.label.lower()) for o in image.objects)) for image in imported.images]
    return replace(imported, images=images, classes=sorted({name.lower() for name in imported.classes}))


def run_variant(name: str, config: InspectConfig, imported: ImportResult, work: Path) -> tuple[dict, Path]:
    dataset = work / name / "dataset"
    built = build_dataset(imported, dataset, config.dataset, config.augment)
    started = time.perf_counter()
    result = train(config, dataset, work / name / "train")
    train_s = time.perf_counter() - started

    def test(checkpoint: str) -> dict:
        model = load_trained(work / name / "train" / checkpoint, config.model.image_size)
        return held_out(evaluate_split(*model, dataset, "test", config.train.batch_size, config.train.max_new_tokens))

    summary = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "changes": VARIANTS[name],
        "strategy": config.lora.strategy,
        "tasks": config.dataset.tasks,
        "augment": config.augment.model_dump(mode="json", exclude={"extra", "splits"}),
        "lr": config.train.lr,
        "split_images": {split: stats.images for split, stats in built.splits.items()},
        "train_seconds": round(train_s, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped": str(result.stopped),
        "budget": result.budget,
        "valid_map50_by_epoch": [round(h.get("map50", float("nan")), 3) for h in result.history],
        "test_images": sorted(p.name for p in (dataset / "test").iterdir() if p.suffix.lower() in (".jpg", ".png")),
        "test": test("best"),
        "test_latest": test("latest"),  # the last epoch, for comparison with the selection rule's choice
    }
    print(f"{name}: best {json.dumps(summary['test'])}; latest {json.dumps(summary['test_latest'])}", flush=True)
    return summary, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--minutes", type=float, default=6.0, help="train.max_minutes of every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true", help="keep the variants of --out that this run does not measure")
    parser.add_argument("--seed", type=int, default=None, help="another split seed (dataset.seed): a different held-out part")
    parser.add_argument("--base", default=None, help="base model (folder or shipped name) to start from; default: the recipe's")
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"{args.source}: no real fabric set here (it lives in ../shared/real_fabric beside the checkout)")
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    imported = lowercased(import_dataset(args.source))
    base_path = Path(resolve_model_source(args.base or load_recipe(RECIPE).model.name)).resolve()  # the recipe's unless told
    base_sha = _sha256(base_path / "model.safetensors")
    base_override = {"model.name": str(base_path.resolve())}
    if args.seed is not None:
        base_override["dataset.seed"] = args.seed
    kept = json.loads(args.out.read_text()).get("variants", {}) if args.update and args.out.is_file() else {}
    results: dict[str, dict] = {name: entry for name, entry in kept.items() if name not in names}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recipe = load_recipe(RECIPE, overrides={"train.max_minutes": args.minutes, **base_override})
        base_dataset = work / "base"
        build_dataset(imported, base_dataset, recipe.dataset, recipe.augment)
        base = held_out(evaluate_split(*load_trained(recipe.model.name, recipe.model.image_size), base_dataset, "test",
                                       recipe.train.batch_size, recipe.train.max_new_tokens))  # fmt: skip
        base["test_images"] = sorted(p.name for p in (base_dataset / "test").iterdir() if p.suffix.lower() in (".jpg", ".png"))
        print(f"base: {json.dumps(base)}", flush=True)
        scored = report = None
        for name in names:
            config = load_recipe(RECIPE, overrides={"train.max_minutes": args.minutes, **base_override, **VARIANTS[name]})
            results[name], dataset = run_variant(name, config, imported, work)
            results[name]["same_test_images_as_base"] = results[name].pop("test_images") == base["test_images"]
            if name == "recipe":  # the plant's workflow with the recipe's model: merge, score into a store, report
                merged = merge_checkpoint(work / name / "train" / "best", work / "merged")
                store = open_store(f"sqlite:///{work / 'results.db'}")
                scored = score_images(sorted((dataset / "test").glob("*.jpg")), str(merged), store, config.score)
                report = json.loads(class_summary(store, ReportFilter()).to_json(orient="records"))
    summary = {
        "benchmark": "real_fabric",
        "machine": machine_info(),
        "source": str(args.source.relative_to(REPO.parent)) if args.source.is_relative_to(REPO.parent) else str(args.source),
        "recipe": str(RECIPE.relative_to(REPO)),
        "base_model": {"path": str(base_path.relative_to(REPO)) if base_path.is_relative_to(REPO) else str(base_path), "sha256": base_sha},
        "max_minutes": args.minutes,
        "split": recipe.dataset.splits.model_dump(),
        "split_seed": recipe.dataset.seed,
        "metric_notes": "test = held-out split; recall50_agnostic: share of true boxes overlapped (IoU >= 0.5) by any emitted "
        "detection, whatever its class; map50: class-aware COCO mAP@50 with real confidences",
        "base_test": base,
        "variants": results,
        # operating defects (at or above the calibrated thresholds) and every detection stored down to the floor
        "scored": {"images": scored.scored, "operating_defects": scored.detections, "stored_detections": scored.stored,
                   "operating_thresholds": scored.thresholds, "per_class": scored.per_class} if scored else None,
        "report_class_summary": report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
