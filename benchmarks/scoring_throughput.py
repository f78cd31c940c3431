"""Scoring-throughput benchmark: our engine against the seed project's scoring loop, same model, same images.

- ``seed``: a faithful re-implementation of the seed's loop: one image at a time, the processor
  called in the loop, beam search with 3 beams, up to 1024 new tokens, the LoRA adapter left
  unmerged (a peft model), results decoded with the processor's post-processing.
- ``ours_generate``: ``inspect_core.inference.scoring.score_images`` end to end into a SQLite store: worker processes
  decode and resize, the adapter merged once, batched greedy ``generate`` with the KV cache, fp32.
- ``ours``: the same with ``decoder: lean`` (the default: ``inspect_core.inference.greedy``, the same tokens as
  ``generate``: vision tower and encoder once per batch, preallocated KV cache, finished rows leave the batch), fp32.
- ``ours_bf16``: lean with ``precision: bf16`` (fast on CPUs with bf16 units, ``machine.cpu_bf16_units``; its
  mAP cost is measured on the tiny model, on the same held-out images as the resolution cost); ``ours_generate_bf16``
  the same through ``generate``.
- ``ours_onnx_int8``: the same engine with ``backend: onnx`` on the merged model exported by
  ``inspect_core.inference.onnx_export`` with int8 dynamic quantisation (its mAP cost on the tiny model is
  measured here too, on the same held-out images as the resolution cost).

Models: the shipped tiny model (256 px) with a LoRA adapter, on synthetic 512 px fabric frames; and
a random-initialised Florence-2-base architecture (231M, the same compute as real weights) at 768 px
and at 384 px. A random model would answer EOS at once, so EOS is pointed at a token it never emits
(``roofline.never_stops``) and both loops generate exactly 20 tokens (the length of a short defect answer).
Also: the mAP@50 cost of scoring the tiny model at a
lower resolution, and growth (10x the images: time ratio, memory per batch).

``roofline`` (``benchmarks/roofline.py``): the machine's fp32 and bf16 matmul peak, and per model (the tiny
model at 256 px; the demo's fine-tuned model when ``runs/demo/train/merged`` exists; Florence-2-base shaped at
768 px with 20 generated tokens) FLOPs per frame per part, achieved GFLOP/s, fraction of peak and the time split
between vision tower, encoder, decoder and the loop's overhead, for ``generate`` and the lean loop.

    python benchmarks/scoring_throughput.py [--images 48] [--skip-base] [--sections tiny,map,roofline,roofline_base,base] [--out FILE]
    python benchmarks/scoring_throughput.py --device cuda    (the GPU path: base and large, bf16, batch 1/8/32)

``--skip-base`` (or leaving ``base`` out of ``--sections``) keeps the last base results. Writes
``benchmarks/results/scoring_throughput.json`` (``scoring_throughput_cuda.json`` with ``--device cuda``).
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
from roofline import device_throughput, frames, never_stops, peaks, random_model, roofline
from training_throughput import architecture
from transformers import Florence2ForConditionalGeneration

from inspect_core.config import LoraSection, ScoreSection
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, generate_sample
from inspect_core.inference.detector import detect
from inspect_core.inference.onnx_backend import OnnxFlorence
from inspect_core.inference.onnx_export import export_onnx
from inspect_core.inference.scoring import TorchDetector, score_images
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence
from inspect_core.model.lora import apply_strategy
from inspect_core.model.tiny_florence import build_processor, build_tokenizer, image_token_count
from inspect_core.model.trained_model import load_trained, save_checkpoint
from inspect_core.store import open_store
from inspect_core.training.metrics import detection_map
from inspect_core.training.pretrain import synthetic_images

RESULTS = Path(__file__).resolve().parent / "results" / "scoring_throughput.json"
CUDA_RESULTS = RESULTS.with_name("scoring_throughput_cuda.json")
DEMO_MODEL = Path(__file__).resolve().parents[1] / "runs" / "demo" / "train" / "merged"
SECTIONS = ("tiny", "map", "roofline", "roofline_base", "base")


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


class DecoderDetector(TorchDetector):
    """The engine's torch backend with the recipe's ``score.decoder`` passed through."""

    def __init__(self, model_dir: str, precision: str, decoder: str) -> None:
        super().__init__(model_dir, precision)
        self.decoder = decoder

    def __call__(self, crops, max_new_tokens: int, num_beams: int):
        return detect(self.model, self.processor, crops, "<OD>", max_new_tokens=max_new_tokens, num_beams=num_beams, decoder=self.decoder)


def ours(checkpoint: Path, paths: list[Path], db: Path, settings: ScoreSection) -> dict:
    engine = open_store(f"sqlite:///{db}")
    memory: list[float] = []
    detector = DecoderDetector(str(checkpoint), settings.precision, settings.decoder) if settings.backend == "torch" else None
    summary = score_images(paths, str(checkpoint), engine, settings, progress=lambda _n: memory.append(rss_mb()), detector=detector)
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
    settings = ScoreSection(batch_size=8, num_workers=1, max_new_tokens=256, default_threshold=0.0, precision="fp32", decoder="lean")
    mine = ours(checkpoint, paths, work / "tiny.db", settings)
    bf16 = ours(checkpoint, paths, work / "tiny-bf16.db", settings.model_copy(update={"precision": "bf16"}))
    generate = ours(checkpoint, paths, work / "tiny-generate.db", settings.model_copy(update={"decoder": "generate"}))
    generate_bf16 = ours(
        checkpoint, paths, work / "tiny-generate-bf16.db", settings.model_copy(update={"decoder": "generate", "precision": "bf16"})
    )
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
        "ours_generate_images_per_second": round(generate["images_per_second"], 3),
        "generate_speedup": round(generate["images_per_second"] * seed_s / count, 2),
        "ours_generate_bf16_images_per_second": round(generate_bf16["images_per_second"], 3),
        "generate_bf16_speedup": round(generate_bf16["images_per_second"] * seed_s / count, 2),
        "ours_onnx_int8_images_per_second": round(int8["images_per_second"], 3),
        "onnx_int8_speedup": round(int8["images_per_second"] * seed_s / count, 2),
        "growth": {
            "images": [count, count * 10],
            "seconds": [round(mine["seconds"], 2), round(tenfold["seconds"], 2)],
            "time_ratio_for_10x_images": round(tenfold["seconds"] / mine["seconds"], 2),
            "rss_mb_per_batch_10x_run": tenfold["rss_mb_per_batch"],
        },
    }


def tiny_map50(
    size: int = 256, onnx_dir: Path | None = None, count: int = 64, dtype: torch.dtype = torch.float32, decoder: str = "lean"
) -> float:
    """Held-out mAP@50 of the shipped tiny model scored at ``size`` px (instead of 256), in ``dtype``, with ``decoder``,
    or through an ONNX export."""
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
            predictions.extend(detect(model, processor, small, "<OD>", max_new_tokens=96, decoder=decoder))
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
        model = never_stops(Florence2ForConditionalGeneration(config))
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
        settings = ScoreSection(batch_size=4, num_workers=1, max_new_tokens=20, default_threshold=0.0, precision="fp32", decoder="lean")
        arms = {
            "ours": settings,
            "ours_bf16": settings.model_copy(update={"precision": "bf16"}),
            "ours_generate": settings.model_copy(update={"decoder": "generate"}),
            "ours_generate_bf16": settings.model_copy(update={"decoder": "generate", "precision": "bf16"}),
        }
        for name, arm in arms.items():
            entry[f"{name}_images_per_second"] = round(
                ours(checkpoint, paths, work / f"base-{size}-{name}.db", arm)["images_per_second"], 3
            )
        onnx_dir = work / f"base-{size}-onnx-int8"
        export_onnx(checkpoint, onnx_dir, quantize="int8")
        int8 = ours(onnx_dir, paths, work / f"base-{size}-int8.db", settings.model_copy(update={"backend": "onnx"}))
        entry["ours_onnx_int8_images_per_second"] = round(int8["images_per_second"], 3)
        results[f"{size}px"] = entry
        shutil.rmtree(checkpoint)
        shutil.rmtree(onnx_dir)
    seed = results["768px"]["seed_images_per_second"]
    for entry in results.values():
        for name in ("ours", "ours_bf16", "ours_generate", "ours_generate_bf16", "ours_onnx_int8"):
            entry[f"{name.removeprefix('ours_') if name != 'ours' else 'lean'}_speedup_vs_seed_768px"] = round(
                entry[f"{name}_images_per_second"] / seed, 2
            )
    return results


def rooflines(count: int, peak: dict[str, float]) -> dict:
    """The roofline of the tiny model (and the demo's, if built) at 256 px, fp32 and bf16, batch 8."""
    report: dict = {}
    tiny_frames = frames(count, 512)
    models = {"tiny_256px": EMBEDDED_MODEL_DIR} | ({"demo_256px": DEMO_MODEL} if (DEMO_MODEL / "config.json").is_file() else {})
    for name, folder in models.items():
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            model, processor = load_florence(str(folder), dtype=dtype)
            report[f"{name}_{precision}"] = roofline(model.eval(), processor, tiny_frames, 8, 256, peak[precision])
    return report


def base_rooflines(count: int, peak: dict[str, float]) -> dict:
    """The roofline of a Florence-2-base shaped model at 768 px, fp32 and bf16, batch 4."""
    report: dict = {}
    # Random weights: the FLOPs and speed of Florence-2-base, not its answers, so every frame gets exactly 20 tokens.
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, processor = random_model("base", 768, dtype, "cpu")
        report[f"base_768px_{precision}"] = roofline(model, processor, frames(count, 1024), 4, 20, peak[precision])
        report[f"base_768px_{precision}"]["note"] = "random weights: 20 generated tokens per frame (EOS forced at the last)"
    return report


def cuda_report() -> dict:
    """The GPU path: Florence-2-base and -large shaped, bf16, batches 1, 8 and 32, generate against the compiled lean loop."""
    return {"machine": machine_info(), "peak_gflops": peaks("cuda"), "throughput": device_throughput("cuda")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--base-images", type=int, default=8)
    parser.add_argument("--roofline-images", type=int, default=16)
    parser.add_argument("--roofline-base-images", type=int, default=4)
    parser.add_argument("--skip-base", action="store_true")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="the JSON written (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if unknown := sections - set(SECTIONS):
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"--device cuda: torch {torch.__version__} sees no CUDA device "
            f"({'a CPU-only build' if torch.version.cuda is None else 'no GPU visible or driver not loaded'}); "
            "run it on a machine with an NVIDIA GPU and a CUDA build of torch, or leave --device out"
        )
    torch.set_num_threads(2)
    if args.device == "cuda":
        report = cuda_report()
        out = args.out or CUDA_RESULTS
    else:
        report = cpu_report(args, sections)
        out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def cpu_report(args: argparse.Namespace, sections: set[str]) -> dict:
    report: dict = {"machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "tiny" in sections:
            report["tiny"] = tiny(work, args.images)
        if "map" in sections:
            report["tiny_resolution_map50"] = {f"{size}px": round(tiny_map50(size), 4) for size in (256, 192, 128)}
            report["tiny_generate_map50"] = round(tiny_map50(decoder="generate"), 4)
            report["tiny_bf16_map50"] = round(tiny_map50(dtype=torch.bfloat16), 4)
            report["tiny_generate_bf16_map50"] = round(tiny_map50(dtype=torch.bfloat16, decoder="generate"), 4)
            export_onnx(EMBEDDED_MODEL_DIR, work / "tiny-base-int8", quantize="int8")
            report["tiny_onnx_int8_map50"] = round(tiny_map50(onnx_dir=work / "tiny-base-int8"), 4)
        if sections & {"roofline", "roofline_base"}:
            peak = peaks()
            report["roofline"] = {"peak_gflops": peak}
            if "roofline" in sections:
                report["roofline"] |= rooflines(args.roofline_images, peak)
            if "roofline_base" in sections:
                report["roofline"] |= base_rooflines(args.roofline_base_images, peak)
        if "base" in sections and not args.skip_base:
            report["base"] = base(work, args.base_images)
        elif RESULTS.is_file():
            report["base"] = json.loads(RESULTS.read_text()).get("base")  # kept from the last full run
    return report


if __name__ == "__main__":
    main()
