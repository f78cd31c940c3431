"""ONNX scoring benchmark: images/s of PyTorch vs onnxruntime fp32 vs onnxruntime int8 on CPU.

- ``tiny``: the shipped model (models/tiny-fabric-base), 256 px, held-out synthetic images (seed
  10000, as pretraining evaluates), the full ``<OD>`` detect path (processor, greedy generation, parsing)
  in batches of 8 with at most 96 new tokens: images/s, mAP@50 of each backend (the accuracy cost of
  int8) and how many images get exactly PyTorch's detections.
- ``base``: the Florence-2-base architecture with random weights (nothing can be downloaded here; same
  compute as real weights) at 768 px, a few synthetic images, exactly 20 new tokens (the EOS row of the
  output layer is zeroed so no backend stops early): export time, graph sizes, end-to-end images/s
  (processor excluded), and timed on their own, vision+encoder s/image and decoder ms/step (KV cache).
  The encoder figures include the cross-attention key/value projections (the ONNX encoder graph computes
  them); PyTorch's decoder figure includes them too, as its first step computes them.

Every backend runs with the same thread count, 1 then 2 by default: on a shared machine PyTorch's OpenMP
threads wait for each other whenever another job holds a core, which makes its many small decoder-step ops
many times slower, so the 1-thread figures are the robust comparison and the 2-thread ones show what
contention does. Backends are timed in alternation and the median run is reported; load averages are
recorded. Writes ``benchmarks/results/onnx_scoring.json``.

    python benchmarks/onnx_scoring.py [--parts tiny,base] [--repeats 3] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from machine import machine_info
from training_throughput import architecture
from transformers import Florence2ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, generate_sample
from inspect_core.inference.detector import detect
from inspect_core.inference.onnx_backend import OnnxFlorence
from inspect_core.inference.onnx_export import EncoderGraph, export_model, export_onnx
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence
from inspect_core.model.tiny_florence import build_processor, build_tokenizer
from inspect_core.training.metrics import detection_map
from inspect_core.training.pretrain import EVAL_SEED_OFFSET, synthetic_images, vocabulary_corpus

BACKENDS = {"onnx_fp32": None, "onnx_int8": "int8"}


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per run of each callable, interleaved so a load change hits every backend alike, and each
    one's output (from the untimed warm-up run)."""
    outputs = {name: run() for name, run in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return seconds, outputs


def _same(a: list, b: list) -> bool:
    return [(d.label, d.box) for d in a] == [(d.label, d.box) for d in b]


def speedups(speed: dict[str, dict]) -> dict[str, float]:
    return {name: round(speed[name]["images_per_s"] / speed["torch"]["images_per_s"], 2) for name in BACKENDS}


def bench_tiny(images: int, repeats: int, thread_counts: list[int], work: Path) -> dict:
    samples = synthetic_images(EVAL_SEED_OFFSET, 0, images)
    batches = [[pixels for pixels, _a in samples[i : i + 8]] for i in range(0, len(samples), 8)]
    model, processor = load_florence(str(EMBEDDED_MODEL_DIR))
    model.eval()
    exports = {name: export_onnx(EMBEDDED_MODEL_DIR, work / f"tiny_{name}", quantize=quantize) for name, quantize in BACKENDS.items()}
    report: dict = {"model": EMBEDDED_MODEL_DIR.name, "fingerprint": exports["onnx_fp32"]["source"]["fingerprint"],
                    "image_size": 256, "images": images, "batch_size": 8, "max_new_tokens": 96,
                    "exports": {n: {k: e[k] for k in ("graph_mb", "parity_vs_torch")} for n, e in exports.items()},
                    "speed": {}}  # fmt: skip
    for threads in thread_counts:
        torch.set_num_threads(threads)
        detectors = {"torch": lambda batch: detect(model, processor, batch, "<OD>", max_new_tokens=96)}
        detectors |= {name: OnnxFlorence(work / f"tiny_{name}", intra_op_threads=threads).detect for name in BACKENDS}
        load = os.getloadavg()[0]
        runs = {name: (lambda run=run: [d for batch in batches for d in run(batch)]) for name, run in detectors.items()}
        seconds, predictions = alternate(runs, repeats)
        speed = {
            name: {"images_per_s": round(images / statistics.median(s), 2), "runs_s": [round(x, 2) for x in s]}
            for name, s in seconds.items()
        }
        report["speed"][f"threads_{threads}"] = speed | {"load_average": [load, os.getloadavg()[0]], "speedup_vs_torch": speedups(speed)}
    truth = [a.objects for _p, a in samples]
    report["accuracy"] = {}
    for name, predicted in predictions.items():
        scores = detection_map(truth, predicted, DEFECT_CLASSES)
        report["accuracy"][name] = {
            "map50": round(scores.map50, 4),
            "map50_95": round(scores.map50_95, 4),
            "detections": sum(len(p) for p in predicted),
            "images_with_torch_detections": sum(_same(p, t) for p, t in zip(predicted, predictions["torch"])),
        }
    return report


def bench_base(images: int, tokens: int, repeats: int, thread_counts: list[int], work: Path) -> dict:
    tokenizer = build_tokenizer(vocabulary_corpus(0, 50))
    processor = build_processor(tokenizer, 768)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(architecture("base", tokenizer)).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight[tokenizer.eos_token_id] = 0  # logit 0: never the argmax, so all decode `tokens`
    pixels = [generate_sample(EVAL_SEED_OFFSET, i, size=768).image for i in range(images)]
    inputs = processor(text=["<OD>"] * images, images=pixels, return_tensors="pt")
    arrays = [inputs[k].numpy() for k in ("pixel_values", "input_ids", "attention_mask")]
    exports = {
        name: export_model(model, processor, work / f"base_{name}", quantize=quantize, source={"model": "random Florence-2-base"})
        for name, quantize in BACKENDS.items()
    }
    encoder = EncoderGraph(model)
    report: dict = {"arch": "Florence-2-base (random init)", "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                    "image_size": 768, "images": images, "batch_size": images, "max_new_tokens": tokens,
                    "exports": {n: {k: e[k] for k in ("export_s", "graph_mb", "parity_vs_torch")} for n, e in exports.items()},
                    "speed": {}}  # fmt: skip
    generate = torch.inference_mode()(partial(model.generate, max_new_tokens=tokens, do_sample=False, num_beams=1))
    tensors = [inputs[k] for k in ("pixel_values", "input_ids", "attention_mask")]
    with torch.inference_mode():
        encoded = BaseModelOutput(last_hidden_state=encoder(*tensors)[0])
    for threads in thread_counts:
        torch.set_num_threads(threads)
        runs: dict[str, Callable[[], object]] = {
            "torch": lambda: generate(**inputs)[:, 1:],
            "torch_encoder": torch.inference_mode()(partial(encoder, *tensors)),
            "torch_decoder": partial(generate, encoder_outputs=encoded, attention_mask=inputs["attention_mask"]),
        }
        for name in BACKENDS:
            runtime = OnnxFlorence(work / f"base_{name}", intra_op_threads=threads)
            runs[name] = lambda runtime=runtime: runtime.generate(*arrays, max_new_tokens=tokens)[0]
            runs[f"{name}_encoder"] = partial(runtime.encode, *arrays)
            runs[f"{name}_decoder"] = partial(runtime.decode, runtime.encode(*arrays), tokens)
        load = os.getloadavg()[0]
        seconds, outputs = alternate(runs, repeats)
        median = {name: statistics.median(s) for name, s in seconds.items()}
        speed: dict = {}
        for name in ("torch", *BACKENDS):
            generated = outputs[name].shape[1]
            speed[name] = {
                "images_per_s": round(images / median[name], 4),
                "s_per_image": round(median[name] / images, 3),
                "encoder_s_per_image": round(median[f"{name}_encoder"] / images, 3),
                "decoder_ms_per_step": round(1000 * median[f"{name}_decoder"] / generated, 1),
                "new_tokens": generated,
            }
        report["speed"][f"threads_{threads}"] = speed | {"load_average": [load, os.getloadavg()[0]], "speedup_vs_torch": speedups(speed)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="tiny,base", help="Parts to run; the others keep their results from --out.")
    parser.add_argument("--tiny-images", type=int, default=32)
    parser.add_argument("--base-images", type=int, default=2)
    parser.add_argument("--base-tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="Comma-separated thread counts, each used by every backend.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "onnx_scoring.json")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report: dict = {"benchmark": "onnx_scoring", "machine": machine_info(), "repeats": args.repeats}
    report |= {part: previous[part] for part in ("tiny", "base") if part in previous and part not in args.parts}
    with tempfile.TemporaryDirectory() as tmp:
        if "tiny" in args.parts:
            report["tiny"] = bench_tiny(args.tiny_images, args.repeats, threads, Path(tmp))
            print(json.dumps(report["tiny"], indent=2), flush=True)
        if "base" in args.parts:
            report["base"] = bench_base(args.base_images, args.base_tokens, args.repeats, threads, Path(tmp))
            print(json.dumps(report["base"], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
