"""Batched Florence-2 generation that returns detections with real confidences.

A detection's confidence is the geometric mean of the probabilities the model gave the tokens that
make it up: its label text and its four location tokens. So a box whose coordinates the model was
unsure of scores low even when the label was certain, and mAP ranks detections by what the model
actually believed (not a constant 1.0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.data.annotations import Box
from inspect_core.data.loc_tokens import LOC_BINS, decode_box


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    box: Box  # pixels of the original image
    score: float


def loc_token_ids(processor: Florence2Processor) -> dict[int, int]:
    """Token id -> loc bin."""
    ids = processor.tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)])
    return {token_id: index for index, token_id in enumerate(ids)}


def parse_detections(
    token_ids: Sequence[int], log_probs: Sequence[float], processor: Florence2Processor, width: int, height: int,
    loc_ids: dict[int, int],
) -> list[Detection]:  # fmt: skip
    """Split generated tokens into ``text <loc>x4 [<loc>x4 ...]`` groups, one detection per box."""
    special = set(processor.tokenizer.all_special_ids) - set(loc_ids)
    detections: list[Detection] = []
    text_ids: list[int] = []
    text_logp: list[float] = []
    label = ""
    label_logp: list[float] = []
    bins: list[int] = []
    box_logp: list[float] = []
    for token, logp in zip(token_ids, log_probs):
        if token in special:
            continue
        if token in loc_ids:
            if text_ids:  # a new label starts its boxes
                label = processor.tokenizer.decode(text_ids).strip()
                label_logp, text_ids, text_logp = text_logp, [], []
            bins.append(loc_ids[token])
            box_logp.append(logp)
            if len(bins) == 4:
                if label and bins[2] > bins[0] and bins[3] > bins[1]:
                    scores = label_logp + box_logp
                    detections.append(Detection(label, decode_box(bins, width, height), math.exp(sum(scores) / len(scores))))
                bins, box_logp = [], []
        else:
            bins, box_logp = [], []  # an unfinished box is dropped
            text_ids.append(token)
            text_logp.append(logp)
    return detections


@torch.inference_mode()
def detect(
    model: Florence2ForConditionalGeneration,
    processor: Florence2Processor,
    images: Sequence[Image.Image | np.ndarray],
    prompts: Sequence[str] | str = "<OD>",
    max_new_tokens: int = 128,
    num_beams: int = 1,
) -> list[list[Detection]]:
    """Detections per image for one batch (greedy with KV cache unless ``num_beams`` > 1)."""
    pil = [Image.fromarray(i) if isinstance(i, np.ndarray) else i for i in images]
    prompts = [prompts] * len(pil) if isinstance(prompts, str) else list(prompts)
    inputs = processor(text=prompts, images=pil, return_tensors="pt", padding=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    scores = tuple(step.float() for step in out.scores)  # bf16 log-probabilities are too coarse to rank detections
    transition = model.compute_transition_scores(out.sequences, scores, getattr(out, "beam_indices", None), normalize_logits=True)
    generated = out.sequences[:, -transition.shape[1] :]
    loc_ids = loc_token_ids(processor)
    return [
        parse_detections(generated[i].tolist(), transition[i].float().tolist(), processor, image.width, image.height, loc_ids)
        for i, image in enumerate(pil)
    ]
