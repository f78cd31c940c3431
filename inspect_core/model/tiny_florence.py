"""A tiny Florence-2 built entirely from code: config, tokenizer and processor, nothing downloaded.

It is the same native ``transformers`` architecture as Florence-2-base/-large (DaViT vision tower,
BART encoder-decoder), only smaller: 256 px input, 65 image tokens, ~5M parameters. The tokenizer is
a byte-level BPE trained here on the task prompts and the fabric vocabulary, plus ``<loc_0>``..
``<loc_999>``, the task tokens and ``<image>``; byte-level BPE still encodes any class name a user
brings. Dropout and drop-path are 0: the defaults are meant for web-scale pretraining and slow a
small model on a small set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
    PreTrainedTokenizerFast,
)

from inspect_core.data.florence_tasks import TASK_PROMPTS
from inspect_core.data.loc_tokens import LOC_BINS

TINY_IMAGE_SIZE = 256
_VISION_STRIDE = 32  # total downsampling of the DaViT tower
BPE_VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3, as in BART
IMAGE_TOKEN = "<image>"
# Florence-2's own task vocabulary, so any task prompt tokenises as a single special token.
TASK_TOKENS = [
    "<OCR>", "<OCR_WITH_REGION>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>",
    "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REFERRING_EXPRESSION_SEGMENTATION>",
    "<REGION_TO_SEGMENTATION>", "<OPEN_VOCABULARY_DETECTION>", "<REGION_TO_CATEGORY>", "<REGION_TO_DESCRIPTION>",
    "<REGION_TO_OCR>", "<REGION_PROPOSAL>",
]  # fmt: skip
# The post-processor refuses a parse task it has no entry for; these are all the ones it knows.
POST_PROCESSOR_CONFIG = {
    "ocr": {
        "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
        "AREA_THRESHOLD": 0.0,
    },
    "phrase_grounding": {"FILTER_BY_AREA": False, "banned_grounding_tokens": []},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def image_token_count(image_size: int) -> int:
    """Florence-2 image tokens: one per 32x32 cell plus one pooled token."""
    return (image_size // _VISION_STRIDE) ** 2 + 1


def build_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE over ``corpus`` plus every Florence-2 special token."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    # Targets are wrapped as BART does: <s> text </s>, so the decoder learns where an answer stops.
    bos, eos = bpe.token_to_id("<s>"), bpe.token_to_id("</s>")
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", image_token=IMAGE_TOKEN
    )
    tokenizer.add_special_tokens({"additional_special_tokens": TASK_TOKENS})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(LOC_BINS)], special_tokens=True)
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, image_size: int = TINY_IMAGE_SIZE) -> Florence2Processor:
    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},
        do_resize=True,
        do_center_crop=False,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        resample=3,  # bicubic, as Florence-2
    )
    image_processor.image_seq_length = image_token_count(image_size)
    return Florence2Processor(image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG)


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> Florence2Config:
    width = 192
    return Florence2Config(
        vision_config={
            "depths": [1, 1, 2, 1],
            "embed_dim": [32, 64, 128, width],
            "num_heads": [1, 2, 4, 6],
            "num_groups": [1, 2, 4, 6],
            "window_size": 8,
            "drop_path_rate": 0.0,
            "projection_dim": width,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "d_model": width,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 4 * width,
            "decoder_ffn_dim": 4 * width,
            "max_position_embeddings": 512,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.eos_token_id,
            "forced_eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.image_token_id,
    )


def _sincos_2d(rows: int, dim: int) -> torch.Tensor:
    """Sine-cosine table: gives each image cell a distinct, smooth position code from step 0."""
    position = np.arange(rows)[:, None]
    freq = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)[None, :]
    table = np.zeros((rows, dim), np.float32)
    table[:, 0::2] = np.sin(position * freq)[:, : (dim + 1) // 2]
    table[:, 1::2] = np.cos(position * freq)[:, : dim // 2]
    return torch.from_numpy(table)


def build_tiny(corpus: list[str], seed: int = 0) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """A randomly initialised tiny Florence-2 and its processor (the starting point of pretraining)."""
    tokenizer = build_tokenizer(corpus)
    processor = build_processor(tokenizer)
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(tiny_config(tokenizer))
    embedding = model.model.multi_modal_projector.image_position_embed
    loc_ids = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)])
    words = model.get_input_embeddings().weight  # tied to the output head
    with torch.no_grad():
        embedding.row_embeddings.weight.copy_(_sincos_2d(*embedding.row_embeddings.weight.shape))
        embedding.column_embeddings.weight.copy_(_sincos_2d(*embedding.column_embeddings.weight.shape))
        # Neighbouring location bins start with similar embeddings, so the (tied) output logits over
        # <loc_i> are a smooth function of the hidden state: regressing a coordinate is then learnable
        # instead of 1000 unrelated classes each seen rarely. Scaled to the random init's norm.
        table = _sincos_2d(LOC_BINS, words.shape[1])
        words[loc_ids] = table * (words.std() * (words.shape[1] ** 0.5) / table.norm(dim=1, keepdim=True))
    return model, processor


def task_prompt_corpus() -> list[str]:
    """The prompt texts the processor substitutes for task tokens (what the encoder reads)."""
    processor_prompts = [
        "Locate the objects with category name in the image.",
        "Locate the objects in the image, with their descriptions.",
        "Locate the phrases in the caption:",
        "What does the image describe?",
        "Describe in detail what is shown in the image.",
    ]
    return processor_prompts + list(TASK_PROMPTS.values())


def save_pretrained(model: Florence2ForConditionalGeneration, processor: Florence2Processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
