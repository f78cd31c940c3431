from pathlib import Path

import numpy as np
import torch
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.model.tiny_florence import TASK_TOKENS, TINY_IMAGE_SIZE, image_token_count
from inspect_core.training.batches import IGNORE_INDEX, encode_batch


def _load(path: Path):
    return Florence2ForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)


def test_tokenizer_has_the_florence_vocabulary(random_tiny_dir: Path) -> None:
    model, processor = _load(random_tiny_dir)
    tokenizer = processor.tokenizer
    assert tokenizer.image_token == "<image>" and tokenizer.image_token_id == model.config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<loc_0>") != tokenizer.unk_token_id
    assert len(tokenizer.tokenize("<loc_999>")) == 1 and len(tokenizer.tokenize("<OD>")) == 1
    assert all(t in tokenizer.all_special_tokens for t in TASK_TOKENS)
    assert model.config.text_config.vocab_size == len(tokenizer)
    # byte-level BPE encodes class names it never saw, losslessly
    ids = tokenizer("Dropped stitch", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "Dropped stitch"


def test_processor_matches_the_vision_tower(random_tiny_dir: Path) -> None:
    model, processor = _load(random_tiny_dir)
    assert processor.image_processor.image_seq_length == image_token_count(TINY_IMAGE_SIZE) == 65
    image = np.zeros((300, 200, 3), np.uint8)
    inputs = encode_batch(
        processor, [image, image], ["<OD>", "<CAPTION_TO_PHRASE_GROUNDING>a small hole"], ["hole<loc_1><loc_2><loc_3><loc_4>", ""]
    )
    assert inputs["pixel_values"].shape == (2, 3, 256, 256)
    assert (inputs["input_ids"] == model.config.image_token_id).sum(dim=1).tolist() == [65, 65]
    assert inputs["labels"][1, 2:].eq(IGNORE_INDEX).all()  # padding costs no loss
    assert torch.isfinite(model(**inputs).loss)


def test_save_and_reload_give_the_same_model(random_tiny_dir: Path, tmp_path: Path) -> None:
    model, processor = _load(random_tiny_dir)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor_again = _load(tmp_path)
    inputs = encode_batch(processor_again, [np.zeros((64, 64, 3), np.uint8)], ["<OD>"], ["hole<loc_1><loc_2><loc_3><loc_4>"])
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, again(**inputs).logits, atol=1e-6)
    parsed = processor_again.post_process_generation("hole<loc_100><loc_200><loc_300><loc_400>", task="<OD>", image_size=(100, 100))
    assert parsed["<OD>"]["labels"] == ["hole"]
