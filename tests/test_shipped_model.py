"""The embedded base model must really detect: scored on synthetic images it never saw."""

import json

import pytest

from inspect_core.model_factory import EMBEDDED_MODEL_DIR, load_florence
from inspect_core.pretrain_tiny import EVAL_SEED_OFFSET, evaluate_detection, synthetic_images
from inspect_core.synthetic_fabric import DEFECT_CLASSES

# Training drew seed 0; model selection used seed EVAL_SEED_OFFSET; this test uses a third seed.
FRESH_SEED = 2 * EVAL_SEED_OFFSET + 7
LOWER_BOUND_MAP50 = 0.45


@pytest.fixture(scope="module")
def shipped():
    if not (EMBEDDED_MODEL_DIR / "model.safetensors").is_file():
        pytest.fail(f"the embedded model is missing from {EMBEDDED_MODEL_DIR}")
    return load_florence("tiny")


def test_shipped_model_detects_defects_on_fresh_images(shipped) -> None:
    model, processor = shipped
    result = evaluate_detection(model, processor, synthetic_images(FRESH_SEED, 0, 48), DEFECT_CLASSES)
    assert result.map50 >= LOWER_BOUND_MAP50, json.dumps(result.as_dict(), indent=1)
    assert all(result.per_class[c]["instances"] > 0 for c in DEFECT_CLASSES)


def test_shipped_model_is_plain_florence2_and_small(shipped) -> None:
    model, processor = shipped
    assert type(model).__name__ == "Florence2ForConditionalGeneration"
    assert (EMBEDDED_MODEL_DIR / "model.safetensors").stat().st_size < 25 * 1024 * 1024
    assert (EMBEDDED_MODEL_DIR / "README.md").is_file()
    for task in ("<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>a small dark hole"):
        inputs = processor(text=[task], images=[synthetic_images(FRESH_SEED, 1, 1)[0][0]], return_tensors="pt")
        assert model.generate(**inputs, max_new_tokens=8).shape[1] > 1
