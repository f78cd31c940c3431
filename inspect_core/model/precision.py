"""Where bf16 pays: chips with bf16 matrix units.

Measured on two 2-core CPUs with such units (benchmarks/results/): on a Xeon with AMX, bf16 ran the
Florence-2-base vision tower 2-3x faster at 768 px and a batch-1 LoRA step of base 1.24x faster; on an
AMD EPYC with AVX512-BF16, LoRA steps ran 2.05x (base) and 1.87x (large) faster at 0.71-0.76x the
memory. It cost the tiny model 0.03 mAP@50 on 64 held-out images, and its small matrices gain nothing
(its batch-1 step ran slower). Without such units bf16 is emulated and slower than fp32.
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
