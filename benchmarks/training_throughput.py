"""Training-throughput benchmark: samples/s and peak memory of a LoRA step on CPU.

Architectures: ``tiny`` (the embedded model's), ``base`` (Florence-2-base, 231M) and ``large``
(770M), random-initialised (same compute as real weights), at 768 px. Each configuration runs in its
own process so peak RSS is its own. Modes:

- ``ours``: batch N, optional gradient checkpointing (text layers and DaViT blocks), inputs encoded
  outside the timed model step as a DataLoader collate would; fp32, or bf16 autocast as the trainer's
  ``precision: auto`` runs it on a CPU with bf16 units (AMX or AVX512-BF16: ``machine.cpu_bf16_units``);
- ``seed``: a faithful re-implementation of the seed project's loop: fp32, batch 1, the processor
  called inside the loop for every sample, optimizer step every sample, no accumulation.

Also projects the GPU memory of Florence-2-large + LoRA, batch 8, bf16 + checkpointing from the
activation memory measured here. Writes ``benchmarks/results/training_throughput.json``.

    python benchmarks/training_throughput.py [--archs tiny,base,large] [--steps 3]

Architectures left out of ``--archs`` keep their results from the previous JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from machine import machine_info
from PIL import Image
from transformers import Florence2Config, Florence2ForConditionalGeneration

from inspect_core.config import LoraSection
from inspect_core.model.lora import apply_strategy
from inspect_core.model.tiny_florence import build_processor, build_tokenizer, image_token_count, tiny_config
from inspect_core.training.batches import encode_batch
from inspect_core.training.pretrain import vocabulary_corpus
from inspect_core.training.trainer import checkpoint_vision_blocks

IMAGE_SIZE = 768
SUFFIX = "hole<loc_100><loc_120><loc_180><loc_200>stain<loc_500><loc_510><loc_640><loc_700>broken_yarn<loc_10><loc_400><loc_990><loc_430>"


def architecture(name: str, tokenizer) -> Florence2Config:
    """Florence-2 configs by size; the tokenizer only supplies special-token ids."""
    if name == "tiny":
        config = tiny_config(tokenizer)
        config.text_config.max_position_embeddings = 1024  # 577 image tokens at 768 px + the prompt
        return config
    vision = {"depths": [1, 1, 9, 1], "window_size": 12, "drop_path_rate": 0.1}
    if name == "base":
        vision |= {"embed_dim": [128, 256, 512, 1024], "num_heads": [4, 8, 16, 32], "num_groups": [4, 8, 16, 32], "projection_dim": 768}
        text = {"d_model": 768, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 12, "decoder_attention_heads": 12,
                "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072}  # fmt: skip
    elif name == "large":
        vision |= {"embed_dim": [256, 512, 1024, 2048], "num_heads": [8, 16, 32, 64], "num_groups": [8, 16, 32, 64], "projection_dim": 1024}
        text = {"d_model": 1024, "encoder_layers": 12, "decoder_layers": 12, "encoder_attention_heads": 16, "decoder_attention_heads": 16,
                "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096}  # fmt: skip
    else:
        raise ValueError(name)
    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "pad_token_id", "eos_token_id")}
    text |= {"vocab_size": 51289, **ids, "decoder_start_token_id": tokenizer.eos_token_id, "forced_eos_token_id": tokenizer.eos_token_id}
    return Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)


def run_one(arch: str, mode: str, batch: int, checkpointing: bool, steps: int, precision: str = "fp32") -> dict:
    torch.manual_seed(0)
    tokenizer = build_tokenizer(vocabulary_corpus(0, 50))
    processor = build_processor(tokenizer, IMAGE_SIZE)
    model = Florence2ForConditionalGeneration(architecture(arch, tokenizer))
    parameters = sum(p.numel() for p in model.parameters())
    model = apply_strategy(model, LoraSection(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "fc1", "fc2"]))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        checkpoint_vision_blocks(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)) for _ in range(batch)]
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def step() -> None:
        if mode == "seed":  # one sample at a time, processor inside the loop, step every sample
            for image in images:
                inputs = processor(text=["<OD>"], images=[image], return_tensors="pt")
                labels = processor.tokenizer([SUFFIX], return_tensors="pt").input_ids
                model(**inputs, labels=labels).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**encoded).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    encoded = encode_batch(processor, images, ["<OD>"] * batch, [SUFFIX] * batch)
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        if mode != "seed":
            encoded = encode_batch(processor, images, ["<OD>"] * batch, [SUFFIX] * batch)  # what the collate costs
        step()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "arch": arch, "mode": mode, "batch": batch, "gradient_checkpointing": checkpointing, "precision": precision,
        "params_m": round(parameters / 1e6, 1),
        "image_tokens": image_token_count(IMAGE_SIZE), "steps": steps, "samples_per_s": round(steps * batch / elapsed, 4),
        "s_per_sample": round(elapsed / (steps * batch), 3), "peak_rss_mb": round(peak), "rss_before_training_mb": round(baseline_rss),
    }  # fmt: skip


def gpu_projection(results: list[dict]) -> dict | None:
    """Florence-2-large, LoRA, batch 8, bf16 + checkpointing on a 24 GB GPU, from CPU measurements."""
    large = {
        (r["batch"], r["gradient_checkpointing"]): r
        for r in results
        if r["arch"] == "large" and r["mode"] == "ours" and r.get("precision", "fp32") == "fp32"
    }
    measured = large.get((1, True))
    if not measured:
        return None
    weights_fp32_mb = measured["params_m"] * 4
    activation_fp32_mb = max(measured["peak_rss_mb"] - measured["rss_before_training_mb"], 0)
    projected = {
        "weights_bf16_gb": round(measured["params_m"] * 2 / 1024, 2),
        "lora_params_and_adamw_states_gb": round(5.66 * (2 + 4 + 4 + 4) / 1024, 2),
        "activations_per_sample_fp32_gb_measured": round(activation_fp32_mb / 1024, 2),
        "activations_batch8_bf16_gb": round(activation_fp32_mb / 1024 / 2 * 8, 2),
        "cuda_context_and_allocator_slack_gb": 1.5,
    }
    projected["total_gb"] = round(sum(v for k, v in projected.items() if k != "activations_per_sample_fp32_gb_measured"), 2)
    projected["fits_24_gb"] = projected["total_gb"] < 24
    projected["method"] = (
        "Peak RSS of a batch-1 LoRA step with gradient checkpointing on CPU (fp32) minus RSS before training = activation + "
        "gradient working memory per sample; halved for bf16 and multiplied by 8 for batch 8 (checkpointed activations grow "
        f"linearly with batch). fp32 weights were {weights_fp32_mb / 1024:.2f} GB of the RSS before training. Not measured on a GPU: "
        "none was lent to this task."
    )
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="tiny,base,large")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "training_throughput.json")
    args = parser.parse_args()
    if args.one:
        arch, mode, batch, checkpointing, precision = args.one.split(",")
        print(json.dumps(run_one(arch, mode, int(batch), checkpointing == "1", args.steps, precision)))
        return
    # large at batch 8 costs minutes per step on 2 cores: it gets the seed loop, the batch-1 bf16 step and
    # the batch-1 checkpointed step the GPU projection needs.
    configurations = {
        "tiny": [("seed", 1, 0, "fp32"), ("ours", 1, 0, "fp32"), ("ours", 1, 0, "bf16"), ("ours", 1, 1, "fp32"), ("ours", 8, 0, "fp32"),
                 ("ours", 8, 0, "bf16"), ("ours", 8, 1, "fp32")],
        "base": [("seed", 1, 0, "fp32"), ("ours", 1, 0, "fp32"), ("ours", 1, 0, "bf16"), ("ours", 1, 1, "fp32"), ("ours", 8, 1, "fp32"),
                 ("ours", 8, 1, "bf16")],
        "large": [("seed", 1, 0, "fp32"), ("ours", 1, 0, "bf16"), ("ours", 1, 1, "fp32")],
    }  # fmt: skip
    archs = args.archs.split(",")
    plan = [(arch, *c) for arch in archs for c in configurations[arch]]
    previous = json.loads(args.out.read_text())["results"] if args.out.is_file() else []
    results = [r for r in previous if r["arch"] not in archs]
    for arch, mode, batch, checkpointing, precision in plan:
        one = f"{arch},{mode},{batch},{checkpointing},{precision}"
        command = [sys.executable, __file__, "--one", one, "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            results.append(
                {"arch": arch, "mode": mode, "batch": batch, "gradient_checkpointing": bool(checkpointing), "precision": precision,
                 "error": done.stderr[-500:]}
            )  # fmt: skip
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    speedups = {}
    for arch in configurations:
        seed = next((r for r in results if r["arch"] == arch and r["mode"] == "seed" and "error" not in r), None)
        for r in results:
            if r["arch"] == arch and r["mode"] == "ours" and seed and "error" not in r:
                key = f"{arch}_batch{r['batch']}_{'ckpt' if r['gradient_checkpointing'] else 'nockpt'}_{r.get('precision', 'fp32')}"
                speedups[key] = {
                    "vs_seed": round(r["samples_per_s"] / seed["samples_per_s"], 2),
                    "memory_vs_seed": round(r["peak_rss_mb"] / seed["peak_rss_mb"], 2),
                }
    report = {"benchmark": "training_throughput", "machine": machine_info(), "image_size": IMAGE_SIZE, "results": results,
              "speedup": speedups, "gpu_projection_large_lora_b8_bf16_ckpt": gpu_projection(results)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
