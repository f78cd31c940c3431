"""Describe the machine a benchmark ran on, so quoted numbers carry their context."""

from __future__ import annotations

import os
import platform

import torch


def machine_info() -> dict[str, object]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # bf16 is fast only on chips with bf16 units: which ones decide the bf16 arms' figures
        "cpu_bf16_units": [name for name, present in (("amx", torch.cpu._is_amx_tile_supported()),
                           ("avx512_bf16", torch.cpu._is_avx512_bf16_supported())) if present],
        "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
