"""Turn (image, prefix, suffix) records into Florence-2 model inputs with labels.

The processor builds the encoder input (image tokens + task prompt); the target is tokenised as
``<s> suffix </s>`` and padding is masked with -100 so it costs no loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import Florence2Processor

IGNORE_INDEX = -100


def encode_batch(
    processor: Florence2Processor, images: Sequence[np.ndarray | Image.Image], prefixes: Sequence[str], suffixes: Sequence[str]
) -> dict[str, torch.Tensor]:
    pil = [Image.fromarray(i) if isinstance(i, np.ndarray) else i for i in images]
    inputs = processor(text=list(prefixes), images=pil, return_tensors="pt", padding=True)
    targets = processor.tokenizer(list(suffixes), return_tensors="pt", padding=True, return_token_type_ids=False)
    labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, IGNORE_INDEX)
    return {**inputs, "labels": labels}
