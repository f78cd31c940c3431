"""Pretraining's synthetic source can draw the randomised style, and never the held-out one."""

from __future__ import annotations

import numpy as np
import pytest

from inspect_core.data.synthetic_fabric import generate_sample
from inspect_core.errors import UsageError
from inspect_core.training.pretrain import PretrainSettings, _command, synthetic_images, training_styles


def test_pretraining_refuses_the_heldout_style() -> None:
    with pytest.raises(UsageError, match="never"):
        synthetic_images(0, 0, 2, styles=["default", "heldout"])


def test_styles_off_draw_nothing_and_a_fraction_mixes_them() -> None:
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert training_styles(rng, 8, 0.0) == ["default"] * 8
    assert rng.bit_generator.state == before  # runs without randomisation keep their image stream
    mixed = training_styles(np.random.default_rng(1), 400, 0.5)
    assert set(mixed) == {"default", "randomised"} and 140 < mixed.count("randomised") < 260


def test_randomised_training_images_are_the_styles_samples() -> None:
    [(pixels, annotated)] = synthetic_images(3, 4, 1, sizes=[96], styles=["randomised"])
    sample = generate_sample(3, 4, 96, style="randomised")
    assert np.array_equal(pixels, sample.image) and annotated.objects == sample.objects and annotated.caption == sample.caption


def test_the_model_card_command_names_the_randomised_share() -> None:
    settings = vars(PretrainSettings(randomised_fraction=0.5))
    assert "--randomised-fraction 0.5" in _command(settings)
    assert "--randomised-fraction" not in _command(vars(PretrainSettings()))
