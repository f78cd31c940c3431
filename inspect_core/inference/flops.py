"""What a Florence-2 model costs per frame, part by part: FLOPs counted by torch, and time in the matmuls.

The roofline of ``benchmarks/scoring_throughput.py`` needs, per part (vision tower, text encoder,
decoder), the arithmetic a frame needs and the time the hardware spent on it, so that the time
outside the arithmetic (the generation loop's own overhead) shows. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` over the very modules the lean decoder
(:mod:`inspect_core.inference.greedy`) calls, not from a formula: matmuls, convolutions and
attention (torch's counter does not know the CPU attention kernel; :data:`CPU_ATTENTION` adds it with
torch's own attention formula). The parts add up to the whole forward pass
(``tests/inference/test_flops.py``).

Time in the matmuls comes from the CPU profiler: the self time of the matrix kernels (GEMMs,
convolutions, attention) of a part; the rest of its wall time is elementwise work and overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from inspect_core.inference.greedy import LeanGreedy


def _attention_flops(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
# Profiler names of the kernels that do a model's arithmetic: their self time is "time in the matmuls".
MATRIX_KERNELS = frozenset({
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_mm", "aten::mkldnn_convolution",
    "aten::convolution_overrideable", "aten::_convolution", "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention", "aten::cudnn_convolution",
})  # fmt: skip


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """FLOPs of running ``fn`` (a multiply-add counts 2), and what it returned."""
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        out = fn()
    return int(counter.get_total_flops()), out


@dataclass(frozen=True)
class PartFlops:
    """FLOPs per frame. ``decoder_prefill``: the cross-attention keys and values, once per frame;
    ``decoder_token``: one decoder step (LM head included) at answer position ``position``."""

    vision: int
    encoder: int
    decoder_prefill: int
    decoder_token: int
    position: int

    def decoder_frame(self, tokens: float) -> float:
        return self.decoder_prefill + tokens * self.decoder_token

    def frame(self, tokens: float) -> float:
        return self.vision + self.encoder + self.decoder_frame(tokens)

    def as_dict(self, tokens: float) -> dict[str, float]:
        return {**asdict(self), "answer_tokens": round(tokens, 2), "decoder_frame": self.decoder_frame(tokens), "total": self.frame(tokens)}


def part_flops(model: nn.Module, inputs: dict[str, torch.Tensor], position: int = 0) -> PartFlops:
    """Per-part FLOPs of one frame (``inputs``: the processor's output for a batch of one)."""
    lean = LeanGreedy(model)
    text = lean.model.config.text_config
    ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs.get("attention_mask")
    vision, features = count_flops(lambda: lean.image_features(pixels))
    encoder, encoded = count_flops(lambda: lean.encode(ids, features, mask))
    prefill, cross = count_flops(lambda: lean.cross_cache(encoded))
    heads = text.decoder_attention_heads
    cache = torch.zeros(text.decoder_layers, 1, heads, position + 1, text.d_model // heads, dtype=encoded.dtype, device=encoded.device)
    token = torch.full((1,), lean.start, dtype=torch.long, device=encoded.device)
    where = torch.tensor(position, device=encoded.device)
    step, _ = count_flops(lambda: lean.step(token, where, cache, cache.clone(), cross, None, None, position + 1))
    return PartFlops(vision, encoder, prefill, step, position)


def whole_forward_flops(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """FLOPs of the model's own forward pass with the start token as the decoder input (the oracle the parts add up to)."""
    lean = LeanGreedy(model)
    start = torch.full((inputs["input_ids"].shape[0], 1), lean.start, dtype=torch.long, device=inputs["input_ids"].device)
    flops, _ = count_flops(lambda: lean.model(**inputs, decoder_input_ids=start, use_cache=False))
    return flops


@dataclass
class KernelTime:
    wall: float  # seconds, profiled run
    matrix: float  # seconds of it in matrix kernels (self time)

    @property
    def outside(self) -> float:
        return max(self.wall - self.matrix, 0.0)


def kernel_time(fn: Callable[[], Any]) -> KernelTime:
    """Wall time of ``fn`` under the CPU profiler and how much of it the matrix kernels took."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        fn()
        wall = time.perf_counter() - started
    matrix = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATRIX_KERNELS) / 1e6
    return KernelTime(wall, matrix)


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """The machine's sustained GFLOP/s on a square ``dtype`` matmul (best of the timed repeats)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - started) / 4)
    return 2 * size**3 / best / 1e9
