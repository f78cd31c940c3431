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

More of the issue's named data and steadier figures:

- ``--with-hsst`` adds the HSST photographs (26 at 512 px, stain masks, one clean) to the same split;
  the held-out figures are then also given per source (``by_source``);
- ``--seed N`` takes another held-out split; ``--pool A.json B.json ... --out P.json`` sums the found
  defects over several splits' result files (the figure to quote: one split holds 7-23 defects);
- ``--poses 1,4,8`` tests the same trained checkpoints asked in that many poses (``score.tta_poses``:
  flips and turns, boxes fused); ``--keep DIR`` keeps the trained runs, ``--reuse`` tests kept runs
  again without training.
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
from inspect_core.training.data import FlorenceTaskDataset
from inspect_core.training.evaluation import EvaluationReport, evaluate_split
from inspect_core.training.metrics import agnostic_recall
from inspect_core.training.trainer import METRICS_FILE, TrainResult, train

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real_fabric"
SOURCE = SHARED / "roboflow_fabric_yolo"
HSST = SHARED / "hsst_stain_masks"  # 26 real 512 px photographs, stain masks (one empty): more stains, and clean cloth
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


TRAIN_FIELDS = ("output_dir", "epochs_run", "best_epoch", "best_metric", "metric_name", "stopped", "history", "budget")
FLOOR_COUNTS = ("found_at_min_score", "detections_at_min_score")
FLOORS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)  # confidence floors at which the found defects are counted again


def test_image_names(dataset: Path) -> list[str]:
    """The file names of the test split's ``<OD>`` records, in the order ``evaluate_split`` reports them."""
    data = FlorenceTaskDataset(dataset, "test")
    return [data.annotation(i).image_path.name for i, record in enumerate(data.records) if record.task == "od"]


def held_out(report: EvaluationReport, sources: dict[str, str] | None = None, names: list[str] | None = None) -> dict:
    """The test-split figures: class-agnostic recall at IoU 0.5 first, then class-aware mAP.

    With ``sources`` (image name -> source folder) and ``names`` (the test images in report order), the
    recall is also given per source: one set's stains must not hide another's missed holes.
    """
    detection, od = report.detection, report.od
    recall = agnostic_recall(od.truth, od.predictions, iou=0.5)
    by_source = {}
    if sources and names and len(set(sources.values())) > 1:
        for source in sorted(set(sources.values())):
            keep = [i for i, name in enumerate(names) if sources.get(name) == source]
            part = agnostic_recall([od.truth[i] for i in keep], [od.predictions[i] for i in keep], iou=0.5)
            by_source[source] = {"images": len(keep), "found": part["found"], "objects": part["objects"],
                                 "recall50_agnostic": round(part["recall"], 4), "detections": part["detections"]}  # fmt: skip
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
        **({"by_source": by_source} if by_source else {}),
    }


def _sha256(path: Path) -> str:
    """Which base was measured: the embedded model may be retrained, and the figures belong to one file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def combined(results: list[ImportResult]) -> ImportResult:
    """Several labelled folders as one import (the benchmark's own union; ``dataset build`` takes one source)."""
    if len(results) == 1:
        return results[0]
    images = [image for result in results for image in result.images]
    return ImportResult("+".join(r.format for r in results), results[0].root, images,
                        [e for r in results for e in r.skipped], sorted({c for r in results for c in r.classes}))  # fmt: skip


def lowercased(imported: ImportResult) -> ImportResult:
    images = [replace(image, objects=tuple(replace(o, label=o.label.lower()) for o in image.objects)) for image in imported.images]
    return replace(imported, images=images, classes=sorted({name.lower() for name in imported.classes}))


def run_variant(
    name: str, config: InspectConfig, imported: ImportResult, work: Path, sources: dict[str, str], poses: tuple[int, ...] = (1,),
    reuse: bool = False,
) -> tuple[dict, Path]:  # fmt: skip
    """Build, train and test one variant; ``reuse`` tests a kept run (``--keep``) again instead of training it."""
    dataset, run = work / name / "dataset", work / name / "train"
    started = time.perf_counter()
    if reuse:
        result = TrainResult(**{k: v for k, v in json.loads((run / METRICS_FILE).read_text()).items() if k in TRAIN_FIELDS})
        splits = {
            split: sum(1 for p in (dataset / split).iterdir() if p.suffix.lower() in (".jpg", ".png"))
            for split in ("train", "valid", "test")
        }
    else:
        splits = {split: stats.images for split, stats in build_dataset(imported, dataset, config.dataset, config.augment).splits.items()}
        result = train(config, dataset, run)
    train_s = time.perf_counter() - started

    def test(checkpoint: str, count: int = 1) -> dict:
        model = load_trained(run / checkpoint, config.model.image_size)
        report = evaluate_split(*model, dataset, "test", config.train.batch_size, config.train.max_new_tokens, poses=count)
        return held_out(report, sources, test_image_names(dataset))

    summary = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "changes": VARIANTS[name],
        "strategy": config.lora.strategy,
        "tasks": config.dataset.tasks,
        "augment": config.augment.model_dump(mode="json", exclude={"extra", "splits"}),
        "lr": config.train.lr,
        "split_images": splits,
        "train_seconds": None if reuse else round(train_s, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped": str(result.stopped),
        "budget": result.budget,
        "valid_map50_by_epoch": [round(h.get("map50", float("nan")), 3) for h in result.history],
        "test_images": sorted(p.name for p in (dataset / "test").iterdir() if p.suffix.lower() in (".jpg", ".png")),
        "test": test("best"),
        "test_latest": test("latest"),  # the last epoch, for comparison with the selection rule's choice
    }
    for count in (c for c in poses if c > 1):  # the same checkpoints asked in more poses (score.tta_poses)
        summary[f"test_poses_{count}"] = test("best", count)
        summary[f"test_latest_poses_{count}"] = test("latest", count)
    print(f"{name}: best {json.dumps(summary['test'])}; latest {json.dumps(summary['test_latest'])}", flush=True)
    return summary, dataset


def pooled(files: list[Path]) -> dict:
    """Runs on several split seeds as one figure: defects found and detections summed over their held-out parts.

    One split's 7-14 test images hold 7-23 defects, so one defect moves its recall by 0.04-0.14; the
    pooled count is the figure to quote. mAP@50 cannot be summed: the mean of the splits is given.
    """
    runs = [json.loads(f.read_text()) for f in files]
    entries = [run["variants"]["recipe"] for run in runs]
    keys = [k for k, v in entries[0].items() if k.startswith("test") and isinstance(v, dict) and all(k in e for e in entries)]
    summary: dict = {
        "runs": [{"file": f.name, "source": run["source"], "split_seed": run["split_seed"], "base_model": run["base_model"],
                  "measured_at": e["measured_at"], "epochs_run": e["epochs_run"], "best_epoch": e["best_epoch"]}
                 for f, run, e in zip(files, runs, entries)],
    }  # fmt: skip
    for key in keys:
        parts = [e[key] for e in entries]
        found, objects = sum(p["found"] for p in parts), sum(p["objects"] for p in parts)
        sources = sorted({name for p in parts for name in p.get("by_source", {})})
        summary[key] = {
            "found": found,
            "objects": objects,
            "recall50_agnostic": round(found / max(objects, 1), 4),
            "detections": sum(p["detections"] for p in parts),
            "images": sum(p["images"] for p in parts),
            "map50_mean": round(sum(p["map50"] for p in parts) / len(parts), 4),
            **{at: {f: sum(p[at].get(f, 0) for p in parts) for f in parts[0][at]} for at in FLOOR_COUNTS},
            "by_source": {name: {"found": sum(p["by_source"][name]["found"] for p in parts if name in p.get("by_source", {})),
                                 "objects": sum(p["by_source"][name]["objects"] for p in parts if name in p.get("by_source", {}))}
                          for name in sources},
        }  # fmt: skip
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--with-hsst", action="store_true", help=f"add the HSST stain masks ({HSST.name}) to the same split")
    parser.add_argument("--minutes", type=float, default=6.0, help="train.max_minutes of every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true", help="keep the variants of --out that this run does not measure")
    parser.add_argument("--seed", type=int, default=None, help="another split seed (dataset.seed): a different held-out part")
    parser.add_argument("--keep", type=Path, default=None, help="keep the built datasets and trained runs here (else a temporary folder)")
    parser.add_argument("--poses", default="1", help="comma-separated score.tta_poses to test the checkpoints with (of 1, 2, 4, 8)")
    parser.add_argument("--reuse", action="store_true", help="test the runs kept in --keep again instead of training them")
    parser.add_argument("--pool", type=Path, nargs="+", default=None, help="pool these result files (split seeds) into --out; nothing runs")
    parser.add_argument("--base", default=None, help="base model (folder or shipped name) to start from; default: the recipe's")
    args = parser.parse_args()
    if args.pool:
        summary = {"benchmark": "real_fabric_pooled", "machine": machine_info(), **pooled(args.pool)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: v for k, v in summary.items() if k.startswith("test")}, indent=1))
        return
    if not args.source.is_dir():
        sys.exit(f"{args.source}: no real fabric set here (it lives in ../shared/real_fabric beside the checkout)")
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    poses = tuple(int(n) for n in args.poses.split(","))
    if args.reuse and args.keep is None:
        sys.exit("--reuse tests the runs kept in --keep DIR: name the folder")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    parts = [import_dataset(args.source)] + ([import_dataset(HSST, mask_class="stain")] if args.with_hsst else [])
    sources = {image.image_path.name: part.root.name for part in parts for image in part.images}
    imported = lowercased(combined(parts))
    base_path = Path(resolve_model_source(args.base or load_recipe(RECIPE).model.name)).resolve()  # the recipe's unless told
    base_sha = _sha256(base_path / "model.safetensors")
    base_override = {"model.name": str(base_path.resolve())}
    if args.seed is not None:
        base_override["dataset.seed"] = args.seed
    kept = json.loads(args.out.read_text()).get("variants", {}) if args.update and args.out.is_file() else {}
    results: dict[str, dict] = {name: entry for name, entry in kept.items() if name not in names}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        recipe = load_recipe(RECIPE, overrides={"train.max_minutes": args.minutes, **base_override})
        base_dataset = work / "base"
        if not (args.reuse and base_dataset.is_dir()):
            build_dataset(imported, base_dataset, recipe.dataset, recipe.augment)
        base = held_out(evaluate_split(*load_trained(recipe.model.name, recipe.model.image_size), base_dataset, "test",
                                       recipe.train.batch_size, recipe.train.max_new_tokens),
                        sources, test_image_names(base_dataset))  # fmt: skip
        base["test_images"] = sorted(p.name for p in (base_dataset / "test").iterdir() if p.suffix.lower() in (".jpg", ".png"))
        print(f"base: {json.dumps(base)}", flush=True)
        scored = report = None
        for name in names:
            config = load_recipe(RECIPE, overrides={"train.max_minutes": args.minutes, **base_override, **VARIANTS[name]})
            results[name], dataset = run_variant(name, config, imported, work, sources, poses, args.reuse)
            results[name]["same_test_images_as_base"] = results[name].pop("test_images") == base["test_images"]
            if name == "recipe":  # the plant's workflow with the recipe's model: merge, score into a store, report
                merged = merge_checkpoint(work / name / "train" / "best", Path(tmp) / "merged")
                store = open_store(f"sqlite:///{Path(tmp) / 'results.db'}")
                scored = score_images(sorted((dataset / "test").glob("*.jpg")), str(merged), store, config.score)
                report = json.loads(class_summary(store, ReportFilter()).to_json(orient="records"))
    summary = {
        "benchmark": "real_fabric",
        "machine": machine_info(),
        "source": " + ".join(str(p.root.relative_to(REPO.parent)) if p.root.is_relative_to(REPO.parent) else str(p.root) for p in parts),
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
        "scored": {
            "images": scored.scored,
            "operating_defects": scored.detections,
            "stored_detections": scored.stored,
            "operating_thresholds": scored.thresholds,
            "per_class": scored.per_class,
        }
        if scored
        else None,
        "report_class_summary": report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
