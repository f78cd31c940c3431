"""Scoring-throughput benchmark: our engine against the seed project's scoring loop, same model, same images.

- ``seed``: a faithful re-implementation of the seed's loop: one image at a time, the processor
  called in the loop, beam search with 3 beams, up to 1024 new tokens, the LoRA adapter left
  unmerged (a peft model), results decoded with the processor's post-processing.
- ``ours``: ``inspect_core.inference.scoring.score_images`` end to end into a SQLite store: worker processes
  decode and resize, the adapter merged once, batched greedy generation with the KV cache, fp32.
- ``ours_bf16``: the same with ``precision: bf16`` (fast on CPUs with bf16 units, ``machine.cpu_bf16_units``; its
  mAP cost is measured on the tiny model, on the same held-out images as the resolution cost).
- ``ours_onnx_int8``: the same engine with ``backend: onnx`` on the merged model exported by
  ``inspect_core.inference.onnx_export`` with int8 dynamic quantisation (its mAP cost on the tiny model is
  measured here too, on the same held-out images as the resolution cost).

Models: the shipped tiny model (256 px) with a LoRA adapter, on synthetic 512 px fabric frames; and
a random-initialised Florence-2-base architecture (231M, the same compute as real weights) at 768 px
and at 384 px. A random model never stops on its own, so for base both loops generate exactly 20
tokens (the length of a short defect answer). Also: the mAP@50 cost of scoring the tiny model at a
lower resolution, and growth (10x the images: time ratio, memory per batch).

    python benchmarks/scoring_throughput.py [--images 48] [--skip-base]   (--skip-base keeps the last base results)

Writes ``benchmarks/results/scoring_throughput.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import torch
from machine import machine_info
from PIL import Image
from training_throughput import architecture
from transformers import Florence2ForConditionalGeneration

from inspect_core.config import LoraSection, ScoreSection
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, generate_sample
from inspect_core.inference.detector import detect
from inspect_core.inference.onnx_backend import OnnxFlorence
from inspect_core.inference.onnx_export import export_onnx
from inspect_core.inference.scoring import score_images
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence
from inspect_core.model.lora import apply_strategy
from inspect_core.model.tiny_florence import build_processor, build_tokenizer, image_token_count
from inspect_core.model.trained_model import load_trained, save_checkpoint
from inspect_core.store import open_store
from inspect_core.training.metrics import detection_map
from inspect_core.training.pretrain import synthetic_images

RESULTS = Path(__file__).resolve().parent / "results" / "scoring_throughput.json"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_frames(folder: Path, count: int, seed: int, size: int, repeat: int = 1) -> list[Path]:
    """``count`` synthetic frames, or ``repeat`` copies of each that differ in one pixel (so none is a duplicate)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = cv2.cvtColor(generate_sample(seed, index, size=size).image, cv2.COLOR_RGB2BGR)
        for copy in range(repeat):
            image[:2, :2] = 25 * copy
            path = folder / f"frame_{index:05d}_{copy:02d}.jpg"
            cv2.imwrite(str(path), image)
            paths.append(path)
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in paths}) == len(paths), "duplicate frames would be skipped"
    return paths


def seed_loop(checkpoint: Path, paths: list[Path], max_new_tokens: int, min_new_tokens: int = 0) -> float:
    """The seed's way: per image, processor in the loop, 3 beams, unmerged adapter. Returns seconds."""
    model, processor = load_trained(checkpoint)
    model.eval()
    started = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("RGB")
        inputs = processor(text="<OD>", images=image, return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=3, do_sample=False)
        text = processor.batch_decode(generated, skip_special_tokens=False)[0]
        processor.post_process_generation(text, task="<OD>", image_size=image.size)
    return time.perf_counter() - started


def ours(checkpoint: Path, paths: list[Path], db: Path, settings: ScoreSection) -> dict:
    engine = open_store(f"sqlite:///{db}")
    memory: list[float] = []
    summary = score_images(paths, str(checkpoint), engine, settings, progress=lambda _n: memory.append(rss_mb()))
    return {"seconds": summary.seconds, "images_per_second": summary.images_per_second, "rss_mb_per_batch": [round(m) for m in memory]}


def adapter_checkpoint(base_dir: Path, out: Path) -> Path:
    model, processor = load_florence(str(base_dir))
    model = apply_strategy(model, LoraSection())
    save_checkpoint(model, processor, out, base_model=str(base_dir), strategy="lora")
    return out


def tiny(work: Path, count: int) -> dict:
    checkpoint = adapter_checkpoint(EMBEDDED_MODEL_DIR, work / "tiny-lora")
    paths = write_frames(work / "frames", count, seed=30_000, size=512)
    seed_s = seed_loop(checkpoint, paths, max_new_tokens=1024)
    settings = ScoreSection(batch_size=8, num_workers=1, max_new_tokens=256, default_threshold=0.0, precision="fp32")
    mine = ours(checkpoint, paths, work / "tiny.db", settings)
    bf16 = ours(checkpoint, paths, work / "tiny-bf16.db", settings.model_copy(update={"precision": "bf16"}))
    export_onnx(checkpoint, work / "tiny-onnx-int8", quantize="int8")
    onnx_settings = settings.model_copy(update={"backend": "onnx"})
    int8 = ours(work / "tiny-onnx-int8", paths, work / "tiny-int8.db", onnx_settings)
    # The same work ten times over: each frame ten times, one pixel apart, so answer lengths match.
    many = write_frames(work / "frames10x", count, seed=30_000, size=512, repeat=10)
    tenfold = ours(checkpoint, many, work / "tiny10x.db", settings)
    return {
        "images": count,
        "seed_images_per_second": round(count / seed_s, 3),
        "ours_images_per_second": round(mine["images_per_second"], 3),
        "speedup": round(mine["images_per_second"] * seed_s / count, 2),
        "ours_bf16_images_per_second": round(bf16["images_per_second"], 3),
        "bf16_speedup": round(bf16["images_per_second"] * seed_s / count, 2),
        "ours_onnx_int8_images_per_second": round(int8["images_per_second"], 3),
        "onnx_int8_speedup": round(int8["images_per_second"] * seed_s / count, 2),
        "growth": {
            "images": [count, count * 10],
            "seconds": [round(mine["seconds"], 2), round(tenfold["seconds"], 2)],
            "time_ratio_for_10x_images": round(tenfold["seconds"] / mine["seconds"], 2),
            "rss_mb_per_batch_10x_run": tenfold["rss_mb_per_batch"],
        },
    }


def tiny_map50(size: int = 256, onnx_dir: Path | None = None, count: int = 64, dtype: torch.dtype = torch.float32) -> float:
    """Held-out mAP@50 of the shipped tiny model scored at ``size`` px (instead of 256), in ``dtype``, or through an ONNX export."""
    model, processor = load_florence(str(EMBEDDED_MODEL_DIR))
    model = model.to(dtype).eval()
    onnx = OnnxFlorence(onnx_dir) if onnx_dir is not None else None
    samples = synthetic_images(10_000, 0, count)
    predictions = []
    for start in range(0, count, 16):
        chunk = samples[start : start + 16]
        # Downscale to ``size`` then let the processor bring it back to the model's 256 px input:
        # the detail lost is what a lower camera or scoring resolution loses.
        small = [cv2.resize(cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA), (256, 256)) for p, _a in chunk]
        if onnx is not None:
            predictions.extend(onnx.detect(small, "<OD>", max_new_tokens=96))
        else:
            predictions.extend(detect(model, processor, small, "<OD>", max_new_tokens=96))
    return detection_map([a.objects for _p, a in samples], predictions, DEFECT_CLASSES).map50


def base_model_dir(
    work: Path, size: int, model: Florence2ForConditionalGeneration | None
) -> tuple[Path, Florence2ForConditionalGeneration]:
    tokenizer = build_tokenizer(["hole stain broken yarn wrinkle knot"])
    processor = build_processor(tokenizer, size)
    if model is None:
        torch.manual_seed(0)
        config = architecture("base", tokenizer)
        config.text_config.max_position_embeddings = 1024
        model = Florence2ForConditionalGeneration(config)
    out = work / f"base-{size}"
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    assert processor.image_processor.image_seq_length == image_token_count(size)
    return out, model


def base(work: Path, count: int) -> dict:
    results = {}
    model = None
    for size in (768, 384):
        base_dir, model = base_model_dir(work, size, model)
        checkpoint = adapter_checkpoint(base_dir, work / f"base-{size}-lora")
        paths = write_frames(work / f"frames-base-{size}", count, seed=32_000, size=1024)
        entry: dict = {"images": count}
        if size == 768:
            seed_paths = paths[:3]
            entry["seed_images_per_second"] = round(len(seed_paths) / seed_loop(checkpoint, seed_paths, 20, 20), 3)
        settings = ScoreSection(batch_size=4, num_workers=1, max_new_tokens=20, default_threshold=0.0, precision="fp32")
        mine = ours(checkpoint, paths, work / f"base-{size}.db", settings)
        entry["ours_images_per_second"] = round(mine["images_per_second"], 3)
        bf16 = ours(checkpoint, paths, work / f"base-{size}-bf16.db", settings.model_copy(update={"precision": "bf16"}))
        entry["ours_bf16_images_per_second"] = round(bf16["images_per_second"], 3)
        onnx_dir = work / f"base-{size}-onnx-int8"
        export_onnx(checkpoint, onnx_dir, quantize="int8")
        int8 = ours(onnx_dir, paths, work / f"base-{size}-int8.db", settings.model_copy(update={"backend": "onnx"}))
        entry["ours_onnx_int8_images_per_second"] = round(int8["images_per_second"], 3)
        results[f"{size}px"] = entry
        shutil.rmtree(checkpoint)
        shutil.rmtree(onnx_dir)
    seed = results["768px"]["seed_images_per_second"]
    for entry in results.values():
        entry["speedup_vs_seed_768px"] = round(entry["ours_images_per_second"] / seed, 2)
        entry["bf16_speedup_vs_seed_768px"] = round(entry["ours_bf16_images_per_second"] / seed, 2)
        entry["onnx_int8_speedup_vs_seed_768px"] = round(entry["ours_onnx_int8_images_per_second"] / seed, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--base-images", type=int, default=8)
    parser.add_argument("--skip-base", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {"machine": machine_info(), "tiny": tiny(work, args.images)}
        report["tiny_resolution_map50"] = {f"{size}px": round(tiny_map50(size), 4) for size in (256, 192, 128)}
        report["tiny_bf16_map50"] = round(tiny_map50(dtype=torch.bfloat16), 4)
        export_onnx(EMBEDDED_MODEL_DIR, work / "tiny-base-int8", quantize="int8")
        report["tiny_onnx_int8_map50"] = round(tiny_map50(onnx_dir=work / "tiny-base-int8"), 4)
        if not args.skip_base:
            report["base"] = base(work, args.base_images)
        elif RESULTS.is_file():
            report["base"] = json.loads(RESULTS.read_text()).get("base")  # kept from the last full run
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
