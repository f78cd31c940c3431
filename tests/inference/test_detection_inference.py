import math
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.inference.detector import detect, loc_token_ids, parse_detections


@pytest.fixture(scope="module")
def processor(random_tiny_dir: Path):
    return AutoProcessor.from_pretrained(random_tiny_dir)


def _ids(processor, text: str) -> list[int]:
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_confidence_is_the_geometric_mean_of_label_and_location_tokens(processor) -> None:
    ids = _ids(processor, "hole<loc_100><loc_200><loc_300><loc_400>stain<loc_0><loc_0><loc_500><loc_500>")
    log_probs = [math.log(0.5)] * len(ids)
    hole_tokens = len(_ids(processor, "hole"))
    log_probs[hole_tokens] = math.log(0.125)  # the first loc token of the hole was uncertain
    detections = parse_detections(ids, log_probs, processor, 1000, 500, loc_token_ids(processor))
    assert [d.label for d in detections] == ["hole", "stain"]
    assert detections[0].box == (100.0, 100.0, 300.0, 200.0)
    expected = math.exp((math.log(0.125) + (hole_tokens + 3) * math.log(0.5)) / (hole_tokens + 4))
    assert detections[0].score == pytest.approx(expected)
    assert detections[1].score == pytest.approx(0.5)


def test_repeated_boxes_and_broken_groups(processor) -> None:
    loc = loc_token_ids(processor)
    ids = _ids(
        processor,
        "oily stain<loc_1><loc_1><loc_9><loc_9><loc_20><loc_20><loc_30><loc_30>knot<loc_5><loc_5>hole<loc_9><loc_9><loc_1><loc_1>",
    )
    detections = parse_detections(ids, [0.0] * len(ids), processor, 1000, 1000, loc)
    # both boxes of the phrase; the 2-token knot is dropped; the hole with x2 < x1 is dropped
    assert [(d.label, d.box[0]) for d in detections] == [("oily stain", 1.0), ("oily stain", 20.0)]
    assert all(d.score == 1.0 for d in detections)


def test_detect_runs_batched_greedy_generation(random_tiny_dir: Path, processor) -> None:
    model = Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir)
    images = [np.full((120, 160, 3), v, np.uint8) for v in (0, 128, 255)]
    results = detect(model, processor, images, "<OD>", max_new_tokens=12)
    assert len(results) == 3
    for detections in results:
        for d in detections:
            assert 0 < d.score <= 1 and 0 <= d.box[0] < d.box[2] <= 160
