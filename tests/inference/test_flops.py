"""The FLOP counter behind the roofline: positive per-part counts that add up to the model's own forward pass.

Oracle: torch's FLOP counter over transformers' forward (vision tower, encoder and one decoder step
with the start token), against the parts the lean decoder runs, counted one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inspect_core.inference.flops import count_flops, kernel_time, part_flops, whole_forward_flops
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence


@pytest.fixture(scope="module")
def one_frame():
    model, processor = load_florence(str(EMBEDDED_MODEL_DIR))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    return model.eval(), dict(processor(text=["<OD>"], images=[image], return_tensors="pt"))


@pytest.fixture(scope="module")
def first_step(one_frame):
    return part_flops(*one_frame, position=0)


def test_parts_are_positive_and_add_up_to_the_whole_forward(one_frame, first_step) -> None:
    model, inputs = one_frame
    parts = first_step
    assert min(parts.vision, parts.encoder, parts.decoder_prefill, parts.decoder_token) > 0
    assert parts.vision + parts.encoder + parts.decoder_prefill + parts.decoder_token == whole_forward_flops(model, inputs)


def test_a_later_decoder_step_costs_more_attention_only(one_frame, first_step) -> None:
    model, inputs = one_frame
    early, late = first_step, part_flops(model, inputs, position=20)
    text = model.config.text_config
    # self-attention over 20 more cached keys: QK^T and AV, 2 FLOPs per multiply-add, per layer
    assert late.decoder_token - early.decoder_token == text.decoder_layers * 2 * 2 * 20 * text.d_model


def test_the_cpu_attention_kernel_is_counted() -> None:
    q = torch.randn(1, 2, 5, 8)
    flops, _ = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 5 * 5 * 8)


def test_matrix_time_is_part_of_the_wall_time() -> None:
    a = torch.randn(256, 256)
    timing = kernel_time(lambda: [a @ a for _ in range(5)])
    assert 0 < timing.matrix <= timing.wall
