"""The lean greedy loop answers exactly what greedy ``generate`` answers, row by row, in order.

Oracle: transformers' own ``generate`` on the same model and inputs (and, for the row order under
early exit, each row decoded alone). The shipped tiny model is trained, so its answers stop at EOS
at different lengths, which is what early exit and the forced EOS at the last step need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspect_core.inference.detector import generate_answers, generate_tokens
from inspect_core.inference.greedy import LeanGreedy, lean_unsupported
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data" / "fabric_voc"


@pytest.fixture(scope="module")
def tiny():
    model, processor = load_florence(str(EMBEDDED_MODEL_DIR))
    return model.eval(), processor


def sample_images(count: int, start: int = 0) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.jpg"))[start : start + count]]


def batch_inputs(processor, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
    return dict(processor(text=["<OD>"] * len(images), images=[Image.fromarray(i) for i in images], return_tensors="pt"))


def lean_run(model, inputs: dict, max_new_tokens: int, **options):
    return LeanGreedy(model, **options).generate(inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], max_new_tokens)


def assert_same_as_generate(result, tokens: torch.Tensor, scores: torch.Tensor) -> None:
    assert result.tokens.shape == tokens.shape
    assert torch.equal(result.tokens, tokens)
    for row, length in enumerate(result.lengths.tolist()):  # after EOS generate keeps scoring the padding; lean does not
        assert torch.allclose(result.log_probs[row, :length], scores[row, :length], atol=1e-4, rtol=0)


@pytest.mark.parametrize("max_new_tokens", [6, 40])
def test_lean_tokens_and_scores_equal_generate(tiny, max_new_tokens: int) -> None:
    model, processor = tiny
    inputs = batch_inputs(processor, sample_images(4))
    tokens, scores = generate_tokens(model, inputs, max_new_tokens, 1)
    result = lean_run(model, inputs, max_new_tokens)
    assert_same_as_generate(result, tokens, scores)
    if max_new_tokens == 6:  # cut short: EOS is forced at the last step, as generate's forced_eos_token_id does
        cut = result.lengths == max_new_tokens
        assert cut.any() and (result.tokens[cut, -1] == model.generation_config.eos_token_id).all()


def test_detections_through_either_decoder_are_the_same(tiny) -> None:
    model, processor = tiny
    images = sample_images(4, start=4)
    lean = generate_answers(model, processor, images, max_new_tokens=40, decoder="lean")
    reference = generate_answers(model, processor, images, max_new_tokens=40, decoder="generate")
    assert [a.text for a in lean] == [a.text for a in reference]
    assert sum(len(a.detections) for a in reference) > 0, "no detection: the scores were not compared"
    for mine, theirs in zip(lean, reference):
        assert [(d.label, d.box) for d in mine.detections] == [(d.label, d.box) for d in theirs.detections]
        assert np.allclose([d.score for d in mine.detections], [d.score for d in theirs.detections], atol=1e-4, rtol=0)


def test_early_exit_keeps_each_row_in_its_place(tiny) -> None:
    model, processor = tiny
    images = sample_images(6, start=8)
    inputs = batch_inputs(processor, images)
    result = lean_run(model, inputs, 40)
    assert len(set(result.lengths.tolist())) > 1, "every row stopped at the same step: nothing left the batch early"
    for row, image in enumerate(images):  # each row decoded alone is the oracle for its place in the batch
        alone = lean_run(model, batch_inputs(processor, [image]), 40)
        length = int(alone.lengths[0])
        assert int(result.lengths[row]) == length
        assert torch.equal(result.tokens[row, :length], alone.tokens[0, :length])
        assert (result.tokens[row, length:] == model.generation_config.pad_token_id).all()


def test_static_compiled_path_runs_anywhere_and_matches(tiny) -> None:
    """The GPU path (fixed shapes for CUDA graphs, a compiled step) on the CPU: same tokens as generate."""
    model, processor = tiny
    inputs = batch_inputs(processor, sample_images(2, start=14))
    tokens, scores = generate_tokens(model, inputs, 10, 1)
    assert_same_as_generate(lean_run(model, inputs, 10, static=True), tokens, scores)
    assert_same_as_generate(lean_run(model, inputs, 10, static=True, compile="eager"), tokens, scores)


def test_a_generation_config_lean_cannot_reproduce_falls_back_to_generate(tiny) -> None:
    model, processor = tiny
    assert lean_unsupported(model) is None
    model.generation_config.no_repeat_ngram_size = 2
    try:
        assert "no_repeat_ngram_size=2" in lean_unsupported(model)
        with pytest.raises(ValueError, match="no_repeat_ngram_size"):
            LeanGreedy(model)
        images = sample_images(2, start=20)
        asked_lean = generate_answers(model, processor, images, max_new_tokens=30, decoder="lean")
        assert asked_lean == generate_answers(model, processor, images, max_new_tokens=30, decoder="generate")
    finally:
        model.generation_config.no_repeat_ngram_size = None


def test_an_unknown_decoder_is_refused(tiny) -> None:
    model, processor = tiny
    with pytest.raises(ValueError, match="decoder 'fast'"):
        generate_answers(model, processor, sample_images(1), decoder="fast")
