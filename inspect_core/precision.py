"""Where bf16 pays: chips with bf16 matrix units.

Measured on this project's CPU (Xeon with AMX and AVX512-BF16): bf16 ran the Florence-2-base
vision tower 2-3x faster at 768 px and a batch-1 LoRA training step of base 1.24x faster; it cost the
tiny model 0.03 mAP@50 on 64 held-out images (benchmarks/results/scoring_throughput.json). Without
such units bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

import torch


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def use_bf16(precision: str, device: torch.device) -> bool:
    """``precision`` is ``bf16``, ``fp32`` or ``auto`` (bf16 where :func:`bf16_is_fast`)."""
    return precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
