"""Does the embedded base generalise? The shipped model on fresh images of three synthetic generator styles.

Issue 15 asks for a base that finds defects on a generator it was never trained on (targets:
mAP@50 >= 0.65 and every class AP@50 >= 0.4). This scores the shipped base (``tiny``:
models/tiny-fabric-base) on fresh images of

- ``default``: the project's generator, the one the base was pretrained on (a seed no pretraining
  run used, so the images are new, the generator is not);
- ``randomised``: domain randomisation of the same project (``inspect_core.data.synth.randomised``), not yet in the
  base's pretraining;
- ``heldout``: the independently written family (``inspect_core.data.synth.heldout``) that pretraining must never see.

Each set is written as VOC by ``dataset synth``'s writer, imported and built with the project's own
path (``sources.import_and_build``, every image in the test split, ``<OD>`` only), and scored with
``training.evaluation.evaluate_split`` (class-aware COCO mAP, greedy decoding). Per class it also says
what the defects were called (``called``: the confusion row at IoU 0.5) and how many any box overlapped at
IoU 0.5 and 0.25 (``found_any_class``), so a weak class reads as misnamed or as mislocated. Writes
``benchmarks/results/base_generalisation.json``.

    nice -n 10 python benchmarks/base_generalisation.py [--count 100] [--size 256] [--model tiny] [--out FILE]
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

from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
from inspect_core.data.annotations import box_iou
from inspect_core.data.sources import import_and_build
from inspect_core.data.synthetic_fabric import EVALUATION_SEEDS, STYLES, write_voc_dataset
from inspect_core.model.trained_model import load_trained
from inspect_core.training.evaluation import confusion_matrix, evaluate_split

RESULTS = Path(__file__).resolve().parent / "results" / "base_generalisation.json"
SEED = 20_261_202  # pretraining refuses it (synthetic_fabric.EVALUATION_SEEDS)
assert SEED in EVALUATION_SEEDS
TARGET_MAP50, TARGET_CLASS_AP50 = 0.65, 0.4


def score_style(
    model, processor, style: str, count: int, size: int, seed: int, batch_size: int, work: Path, poses: int = 1
) -> dict:  # fmt: skip
    voc = work / f"{style}_voc"
    if (work / f"{style}_dataset").is_dir():  # another --poses of the same images
        return _scored(model, processor, work / f"{style}_dataset", batch_size, poses, None)
    started = time.perf_counter()
    write_voc_dataset(voc, count=count, seed=seed, size=size, style=style)
    generated = time.perf_counter() - started
    dataset = DatasetSection(splits=SplitRatios(train=0.0, valid=0.0, test=1.0), tasks=["od"], workers=1)
    import_and_build(voc, work / f"{style}_dataset", dataset, AugmentSection())
    return _scored(model, processor, work / f"{style}_dataset", batch_size, poses, round(generated, 1))


def _scored(model, processor, dataset: Path, batch_size: int, poses: int, generate_seconds: float | None) -> dict:
    started = time.perf_counter()
    report = evaluate_split(model, processor, dataset, "test", batch_size=batch_size, poses=poses)
    detection = report.detection
    per_class = {name: round(v["ap50"], 4) for name, v in detection.per_class.items()}
    return {
        "images": report.images,
        "map50": round(detection.map50, 4),
        "map50_95": round(detection.map50_95, 4),
        "per_class_ap50": per_class,
        "instances": {name: v["instances"] for name, v in detection.per_class.items()},
        "called": _called(report.od),
        "found_any_class": _found_any_class(report.od),
        "meets_targets": detection.map50 >= TARGET_MAP50 and min(per_class.values()) >= TARGET_CLASS_AP50,
        "generate_seconds": generate_seconds,
        "evaluate_seconds": round(time.perf_counter() - started, 1),
    }


def _called(od) -> dict[str, dict[str, int]]:
    """Per true class, what its defects were called (IoU >= 0.5, highest confidence first; ``missed``): a class
    with a low AP is either mislocated or named as another class, and the two need different remedies."""
    matrix = confusion_matrix(od.truth, od.predictions, od.classes)
    names = [*od.classes, "missed"]
    return {true: {names[j]: int(n) for j, n in enumerate(matrix[i]) if n} for i, true in enumerate(od.classes)}


def _found_any_class(od, ious: tuple[float, ...] = (0.5, 0.25)) -> dict[str, dict[str, float]]:
    """Per true class, the share overlapped by any detection of any class at each IoU: where the share at 0.25
    is well above the one at 0.5, the defect is found but its box is off (small defects: a 2 px shift halves
    the IoU of an 8 px box)."""
    shares: dict[str, dict[str, float]] = {}
    for name in od.classes:
        best = [max((box_iou(obj.box, det.box) for det in dets), default=0.0)
                for objs, dets in zip(od.truth, od.predictions) for obj in objs if obj.label == name]  # fmt: skip
        if best:
            shares[name] = {f"iou_{t:g}": round(sum(b >= t for b in best) / len(best), 3) for t in ious}
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="model folder or 'tiny' (the shipped base)")
    parser.add_argument("--count", type=int, default=100, help="images per style")
    parser.add_argument("--size", type=int, default=256, help="image side (the base's input is 256 px)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated styles to score")
    parser.add_argument("--poses", default="1", help="comma-separated score.tta_poses to score each style with (1, 2, 4, 8)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON written (another model's: keep the shipped base's file)")
    args = parser.parse_args()
    model, processor = load_trained(args.model)
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            for count in (int(n) for n in args.poses.split(",")):
                key = style if count == 1 else f"{style}_poses_{count}"
                scores[key] = score_style(model, processor, style, args.count, args.size, args.seed, args.batch_size, Path(tmp), count)
                print(key, json.dumps(scores[key]), flush=True)
    summary = {
        "benchmark": "base_generalisation",
        "machine": machine_info(),
        "model": args.model,
        "images_per_style": args.count,
        "size": args.size,
        "seed": args.seed,
        "decoding": "greedy, max 128 new tokens (evaluate_split)",
        "targets": {"map50": TARGET_MAP50, "every_class_ap50": TARGET_CLASS_AP50, "on": "heldout (a generator never trained on)"},
        "styles": scores,
        "command": f"nice -n 10 python benchmarks/base_generalisation.py --model {args.model} --count {args.count} --size {args.size} "
        f"--poses {args.poses}" + (f" --seed {args.seed}" if args.seed != SEED else "")
        + (f" --styles {args.styles}" if styles != list(STYLES) else ""),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
