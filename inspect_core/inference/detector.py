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
from typing import get_args

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.config import ScoreSection
from inspect_core.data.annotations import Box
from inspect_core.data.loc_tokens import LOC_BINS, decode_box
from inspect_core.inference.greedy import LeanGreedy, lean_unsupported

DECODERS = get_args(ScoreSection.model_fields["decoder"].annotation)  # one truth: the recipe's field
DEFAULT_DECODER = ScoreSection.model_fields["decoder"].default


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


def generated_text(token_ids: Sequence[int], processor: Florence2Processor, loc_ids: dict[int, int]) -> str:
    """The words of an answer without its location tokens: a dense caption's or grounding's phrases, joined by '; '."""
    special = set(processor.tokenizer.all_special_ids) - set(loc_ids)
    pieces: list[list[int]] = [[]]
    for token in token_ids:
        if token in loc_ids:
            pieces.append([])
        elif token not in special:
            pieces[-1].append(token)
    words = (processor.tokenizer.decode(piece).strip() for piece in pieces if piece)
    return "; ".join(w for w in words if w)


@dataclass(frozen=True, slots=True)
class Answer:
    """One image's answer: its detections and the text around the boxes (for the caption tasks)."""

    detections: list[Detection]
    text: str


def decoding_options(settings: ScoreSection) -> dict[str, object]:
    """The keywords of :func:`detect` and :func:`generate_answers` the score settings choose."""
    return {"max_new_tokens": settings.max_new_tokens, "num_beams": settings.num_beams, "decoder": settings.decoder}


def generate_tokens(model: nn.Module, inputs: dict, max_new_tokens: int, num_beams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and their log-probabilities from transformers' ``generate`` (beam search, or the fallback)."""
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    scores = tuple(step.float() for step in out.scores)  # bf16 log-probabilities are too coarse to rank detections
    transition = model.compute_transition_scores(out.sequences, scores, getattr(out, "beam_indices", None), normalize_logits=True)
    return out.sequences[:, -transition.shape[1] :], transition.float()


@torch.inference_mode()
def generate_answers(
    model: Florence2ForConditionalGeneration,
    processor: Florence2Processor,
    images: Sequence[Image.Image | np.ndarray],
    prompts: Sequence[str] | str = "<OD>",
    max_new_tokens: int = 128,
    num_beams: int = 1,
    decoder: str = DEFAULT_DECODER,
) -> list[Answer]:
    """Detections and answer text per image for one batch.

    ``num_beams`` > 1 is beam search through ``generate``. Greedy (1) runs ``decoder``: ``lean``
    (:mod:`inspect_core.inference.greedy`: the same tokens, less time) unless the model's generation
    config asks for something only ``generate`` applies, or ``generate``.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    pil = [Image.fromarray(i) if isinstance(i, np.ndarray) else i for i in images]
    prompts = [prompts] * len(pil) if isinstance(prompts, str) else list(prompts)
    inputs = processor(text=prompts, images=pil, return_tensors="pt", padding=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    if decoder == "lean" and num_beams == 1 and lean_unsupported(model) is None:
        result = LeanGreedy(model).generate(inputs["input_ids"], inputs["pixel_values"], inputs.get("attention_mask"), max_new_tokens)
        generated, transition = result.tokens, result.log_probs
    else:
        generated, transition = generate_tokens(model, inputs, max_new_tokens, num_beams)
    loc_ids = loc_token_ids(processor)
    answers = []
    for i, image in enumerate(pil):
        tokens = generated[i].tolist()
        detections = parse_detections(tokens, transition[i].tolist(), processor, image.width, image.height, loc_ids)
        answers.append(Answer(detections, generated_text(tokens, processor, loc_ids)))
    return answers


def detect(
    model: Florence2ForConditionalGeneration, processor: Florence2Processor, images: Sequence[Image.Image | np.ndarray],
    prompts: Sequence[str] | str = "<OD>", **decoding: object,
) -> list[list[Detection]]:  # fmt: skip
    """Detections per image for one batch: :func:`generate_answers` without the text (``decoding``: its keywords)."""
    return [answer.detections for answer in generate_answers(model, processor, images, prompts, **decoding)]
