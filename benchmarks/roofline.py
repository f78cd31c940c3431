"""Roofline of Florence-2 scoring: FLOPs per frame per part, achieved GFLOP/s, fraction of the machine's peak.

For one model at one input size and batch: the FLOPs a frame needs in the vision tower, the text
encoder and the decoder (per generated token, and per frame at the measured answer length), counted
by torch's FLOP counter (``inspect_core.inference.flops``); the seconds each part took, for greedy
``generate`` and for the lean loop (``inspect_core.inference.greedy``), in one process, on the same
batches; the achieved GFLOP/s and its fraction of the peak measured here by a square matmul of the
model's dtype; and the time outside the matrix kernels (elementwise work and the generation loop's
own overhead), from the CPU profiler's self time of the GEMM, convolution and attention kernels.

``device_throughput`` is the GPU path (``scoring_throughput.py --device cuda``): Florence-2-base and
-large shaped models, bf16, batches 1, 8 and 32, ``generate`` against the lean loop with a static
cache under ``torch.compile`` (CUDA graphs through ``mode="reduce-overhead"``), compile time counted
apart. It runs on any device (the tests run it on the CPU with the tiny model).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from training_throughput import architecture
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.data.synthetic_fabric import generate_sample
from inspect_core.inference.detector import generate_tokens
from inspect_core.inference.flops import kernel_time, matmul_peak, part_flops
from inspect_core.inference.greedy import LeanGreedy
from inspect_core.model.tiny_florence import build_processor, build_tokenizer


def synced_clock(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":
        return lambda: (torch.cuda.synchronize(device), time.perf_counter())[1]
    return time.perf_counter


def peaks(device: str = "cpu") -> dict[str, float]:
    """Measured matmul GFLOP/s of this machine in fp32 and bf16 (1 s each; 4096 on a GPU, 1024 on a CPU)."""
    size = 4096 if device.startswith("cuda") else 1024
    return {name: round(matmul_peak(dtype, size, device=device), 1) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}


def frames(count: int, size: int, seed: int = 40_000) -> list[np.ndarray]:
    return [generate_sample(seed, index, size=size).image for index in range(count)]


def prepare(processor: Florence2Processor, images: Sequence[np.ndarray], model: nn.Module, prompt: str = "<OD>") -> dict:
    """The processor's batch as ``detector.generate_answers`` builds it."""
    inputs = processor(text=[prompt] * len(images), images=[Image.fromarray(i) for i in images], return_tensors="pt", padding=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return inputs


def _per_frame(seconds: dict[str, float], count: int) -> dict[str, float]:
    return {k: round(v / count, 5) for k, v in seconds.items()}


def roofline(
    model: nn.Module, processor: Florence2Processor, images: Sequence[np.ndarray], batch: int, max_new_tokens: int,
    peak: float,
) -> dict:  # fmt: skip
    """Roofline of ``model`` on ``images`` at ``batch``: ``generate`` and the lean loop side by side (``peak``: GFLOP/s)."""
    device = model.device
    clock = synced_clock(device)
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    started = clock()
    inputs = [prepare(processor, chunk, model) for chunk in chunks]
    preprocess = clock() - started
    lean = LeanGreedy(model, clock=clock)
    first = inputs[0]
    with torch.inference_mode():  # warm both paths (first-call allocations, lazy inits) outside the timing
        lean.generate(first["input_ids"], first["pixel_values"], first.get("attention_mask"), max_new_tokens)
        generate_tokens(model, first, max_new_tokens, 1)
    parts = {"vision": 0.0, "encoder": 0.0, "decoder": 0.0}
    lean_tokens, lengths = [], []
    for batch_inputs in inputs:
        result = lean.generate(batch_inputs["input_ids"], batch_inputs["pixel_values"], batch_inputs.get("attention_mask"), max_new_tokens)
        parts = {k: parts[k] + result.seconds[k] for k in parts}
        lean_tokens.append(result.tokens)
        lengths += result.lengths.tolist()
    generate_seconds, reference = 0.0, []
    with torch.inference_mode():
        for batch_inputs in inputs:
            started = clock()
            tokens, _scores = generate_tokens(model, batch_inputs, max_new_tokens, 1)
            generate_seconds += clock() - started
            reference.append(tokens)
    identical = all(a.shape == b.shape and bool((a == b).all()) for a, b in zip(lean_tokens, reference))
    count, answer = len(images), float(np.mean(lengths))

    # FLOPs of one frame, the decoder step counted mid-answer; the profiler's matrix-kernel time per part (first batch).
    single = prepare(processor, images[:1], model)
    flops = part_flops(model, single, position=max(int(answer) // 2, 0))
    with torch.inference_mode():
        features = lean.image_features(first["pixel_values"])
        encoded = lean.encode(first["input_ids"], features, first.get("attention_mask"))
    profiled = {
        "vision": kernel_time(lambda: lean.image_features(first["pixel_values"])),
        "encoder": kernel_time(lambda: lean.encode(first["input_ids"], features, first.get("attention_mask"))),
        "decoder": kernel_time(lambda: lean.decode(encoded, first.get("attention_mask"), max_new_tokens)),
    }
    generate_profiled = kernel_time(lambda: generate_tokens(model, first, max_new_tokens, 1))
    share = len(chunks[0]) / count  # the profiled batch's share of the frames
    part_flop = {"vision": flops.vision, "encoder": flops.encoder, "decoder": flops.decoder_frame(answer)}
    total_flop = flops.frame(answer) * count
    model_seconds = sum(parts.values())
    matrix_seconds = sum(p.matrix for p in profiled.values()) / share
    gflops = {k: part_flop[k] * count / parts[k] / 1e9 for k in parts}
    return {
        "batch": batch,
        "frames": count,
        "dtype": str(model.dtype).removeprefix("torch."),
        "answer_tokens_mean": round(answer, 2),
        "flops_per_frame": flops.as_dict(answer),
        "identical_tokens": identical,
        "preprocess_seconds_per_frame": round(preprocess / count, 5),
        "lean": {
            "model_images_per_second": round(count / model_seconds, 3),
            "seconds_per_frame": _per_frame(parts, count),
            "gflops": {**{k: round(v, 2) for k, v in gflops.items()}, "model": round(total_flop / model_seconds / 1e9, 2)},
            "fraction_of_peak": {
                **{k: round(v / peak, 4) for k, v in gflops.items()},
                "model": round(total_flop / model_seconds / 1e9 / peak, 4),
            },
            "matrix_kernel_share_profiled": {k: round(p.matrix / p.wall, 3) for k, p in profiled.items()},
            "decoder_outside_matmuls_seconds_per_frame": round(max(parts["decoder"] - profiled["decoder"].matrix / share, 0) / count, 5),
            "fraction_of_peak_in_matmuls": round(total_flop / matrix_seconds / 1e9 / peak, 4),
        },
        "generate": {
            "model_images_per_second": round(count / generate_seconds, 3),
            "seconds_per_frame": {
                "vision_and_encoder": round((parts["vision"] + parts["encoder"]) / count, 5),
                "decoder_loop": round((generate_seconds - parts["vision"] - parts["encoder"]) / count, 5),
            },
            "gflops": {"model": round(total_flop / generate_seconds / 1e9, 2)},
            "fraction_of_peak": {"model": round(total_flop / generate_seconds / 1e9 / peak, 4)},
            "matrix_kernel_share_profiled": round(generate_profiled.matrix / generate_profiled.wall, 3),
            "outside_matmuls_seconds_per_frame": round(max(generate_seconds - generate_profiled.matrix / share, 0) / count, 5),
        },
        "lean_model_speedup": round(generate_seconds / model_seconds, 2),
        "peak_gflops": peak,
    }


def never_stops(model: Florence2ForConditionalGeneration) -> Florence2ForConditionalGeneration:
    """Point EOS at the ``<image>`` token, which a decoder never emits: every answer then runs to ``max_new_tokens``
    (EOS still forced at the last step). A random model with the start token as EOS answers EOS at once
    (its tied head favours the token it was fed), which would time a one-token answer."""
    model.generation_config.eos_token_id = model.config.image_token_id
    return model


def random_model(arch: str, size: int, dtype: torch.dtype, device: str) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """A randomly initialised Florence-2 of ``arch`` (tiny, base, large) with a processor at ``size`` px:
    the FLOPs and speed of the real weights, not their answers (greedy length is fixed by the caller)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(["hole stain broken yarn wrinkle knot"])
    processor = build_processor(tokenizer, size)
    config = architecture(arch, tokenizer)
    config.text_config.max_position_embeddings = 1024
    model = Florence2ForConditionalGeneration(config).to(device=device, dtype=dtype).eval()
    return never_stops(model), processor


def device_throughput(
    device: str, archs: Sequence[str] = ("base", "large"), batches: Sequence[int] = (1, 8, 32), tokens: int = 20,
    size: int = 768, compile_backend: str | None = "inductor", dtype: torch.dtype = torch.bfloat16,
) -> dict:  # fmt: skip
    """Images/s of ``generate`` and of the lean loop (static cache, compiled) per architecture and batch on ``device``.

    Random weights answer at random; each frame is decoded for exactly ``tokens`` tokens (EOS is only
    forced at the last step), the length of a short defect answer.
    """
    torch_device = torch.device(device)
    clock = synced_clock(torch_device)
    report: dict = {"device": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu",
                    "dtype": str(dtype).removeprefix("torch."), "tokens": tokens, "image_size": size,
                    "compile_backend": compile_backend}  # fmt: skip
    for arch in archs:
        model, processor = random_model(arch, size, dtype, device)
        images = frames(max(batches), size)
        results = {}
        for batch in batches:
            inputs = prepare(processor, images[:batch], model)
            lean = LeanGreedy(model, static=True, compile=compile_backend)
            args = (inputs["input_ids"], inputs["pixel_values"], inputs.get("attention_mask"), tokens)
            started = clock()
            lean.generate(*args)  # compiles (and captures) on first use: counted apart
            compile_seconds = clock() - started
            started = clock()
            lean_result = lean.generate(*args)
            lean_seconds = clock() - started
            with torch.inference_mode():
                generate_tokens(model, inputs, tokens, 1)  # warm
                started = clock()
                generated, _ = generate_tokens(model, inputs, tokens, 1)
                generate_seconds = clock() - started
            results[f"batch_{batch}"] = {
                "generate_images_per_second": round(batch / generate_seconds, 3),
                "lean_images_per_second": round(batch / lean_seconds, 3),
                "lean_first_call_seconds": round(compile_seconds, 2),
                "identical_tokens": generated.shape == lean_result.tokens.shape and bool((generated == lean_result.tokens).all()),
            }
        report[arch] = results
        del model
    return report
