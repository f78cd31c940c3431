"""Run an ONNX export of Florence-2 (see ``onnx_export``) with onnxruntime: batched greedy decoding with KV cache.

It answers like the PyTorch backend, not just approximately: the model's own generation settings are
applied through transformers' own logits processors (forced BOS/EOS, no-repeat n-grams), a token's
log-probability is the log-softmax of the processed scores (what ``compute_transition_scores(...,
normalize_logits=True)`` reports), and detections come from the same ``parse_detections``. So
``score.backend: onnx`` changes speed, and results only by float rounding (or int8 error).

Cached tensors stay in onnxruntime's ``OrtValue``s between steps: the cross-attention keys/values
(tens of MB per image for Florence-2-base) are never copied to numpy and back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from transformers import (
    AutoProcessor,
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    GenerationConfig,
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
)

from inspect_core.errors import BadInputError, UsageError
from inspect_core.inference.detector import Detection, loc_token_ids, parse_detections

MANIFEST = "onnx_model.json"
# Generation settings this runtime does not apply: refusing them beats answering unlike the torch backend.
_UNSUPPORTED_GENERATION = (
    "repetition_penalty", "encoder_repetition_penalty", "encoder_no_repeat_ngram_size", "bad_words_ids", "min_length",
    "min_new_tokens", "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "exponential_decay_length_penalty",
)  # fmt: skip


def io_names(layers: int) -> dict[str, list[str]]:
    """Input and output names of the encoder and decoder-step graphs: the contract between export and runtime."""
    cross = [f"cross_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]
    step_inputs = [f"{prefix}_{kind}.{i}" for i in range(layers) for prefix in ("past", "cross") for kind in ("key", "value")]
    return {
        "encoder_inputs": ["pixel_values", "input_ids", "attention_mask"],
        "encoder_outputs": ["encoder_hidden_states", "encoder_attention_mask", *cross],
        "decoder_inputs": ["input_ids", "encoder_hidden_states", "encoder_attention_mask", *step_inputs],
        "decoder_outputs": ["logits", *[f"present_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]],
    }


def _ort(array: np.ndarray, dtype: type) -> ort.OrtValue:
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array, dtype=dtype))


class OnnxFlorence:
    """A Florence-2 ONNX export folder, loaded for CPU inference (graph optimisation level ALL).

    ``intra_op_threads`` defaults to one per physical core. On a machine shared with other busy jobs, 1
    thread can be several times faster: threads that wait for each other lose whenever one is descheduled
    (measured in benchmarks/results/onnx_scoring.json).
    """

    def __init__(self, folder: Path, intra_op_threads: int | None = None) -> None:
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{folder} has no {MANIFEST}: export a model first with: inspect-core export onnx --model DIR --out {folder}"
            )
        self.manifest = json.loads((folder / MANIFEST).read_text())
        self.processor = AutoProcessor.from_pretrained(folder)
        self.generation_config = GenerationConfig.from_pretrained(folder)
        for key in _UNSUPPORTED_GENERATION:
            if getattr(self.generation_config, key, None) not in (None, 0, 1.0, []):
                raise BadInputError(
                    f"{folder}/generation_config.json sets {key}, which the ONNX backend does not apply: use the torch backend"
                )
        decoder = self.manifest["decoder"]
        self.layers, self.heads, self.head_dim = decoder["layers"], decoder["heads"], decoder["head_dim"]
        eos = self.generation_config.eos_token_id  # special tokens as model.generate takes them: from the generation config
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos])
        self.start_id = self.generation_config.decoder_start_token_id
        self.pad_id = self.generation_config.pad_token_id if self.generation_config.pad_token_id is not None else int(self.eos_ids[0])
        self.input_size = int(self.manifest["image_size"][0])  # what scoring resizes crops to
        self.names = io_names(self.layers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads or 0  # 0: one per physical core
        options.inter_op_num_threads = 1
        graphs = self.manifest["graphs"]
        self.encoder = ort.InferenceSession(str(folder / graphs["encoder"]), options, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(folder / graphs["decoder"]), options, providers=["CPUExecutionProvider"])
        self._decoder_inputs = [i.name for i in self.decoder.get_inputs()]

    def encode(self, pixel_values: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, ort.OrtValue]:
        """Vision tower + encoder: hidden states, mask and every layer's cross-attention keys/values, by name."""
        feed = {
            "pixel_values": _ort(pixel_values, np.float32), "input_ids": _ort(input_ids, np.int64),
            "attention_mask": _ort(attention_mask, np.int64),
        }  # fmt: skip
        outputs = self.encoder.run_with_ort_values(self.names["encoder_outputs"], feed)
        return dict(zip(self.names["encoder_outputs"], outputs))

    def empty_past(self, batch: int) -> dict[str, ort.OrtValue]:
        """The self-attention cache before the first step: length-0 tensors."""
        empty = np.zeros((batch, self.heads, 0, self.head_dim), np.float32)
        return {n: _ort(empty, np.float32) for n in self._decoder_inputs if n.startswith("past_")}

    def decode_step(
        self, encoded: dict[str, ort.OrtValue], input_ids: np.ndarray, past: dict[str, ort.OrtValue]
    ) -> tuple[np.ndarray, dict[str, ort.OrtValue]]:
        """One decoder step for ``input_ids`` [B, 1]: logits [B, vocab] and the grown self-attention cache."""
        values = encoded | past | {"input_ids": _ort(input_ids, np.int64)}
        outputs = self.decoder.run_with_ort_values(self.names["decoder_outputs"], {n: values[n] for n in self._decoder_inputs})
        present = {n.replace("present_", "past_"): v for n, v in zip(self.names["decoder_outputs"][1:], outputs[1:])}
        return outputs[0].numpy()[:, -1], present

    def _logits_processors(self, max_new_tokens: int) -> LogitsProcessorList:
        """The processors ``model.generate`` builds for greedy decoding from this generation config."""
        config, processors = self.generation_config, LogitsProcessorList()
        if config.no_repeat_ngram_size:
            processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
        if config.forced_bos_token_id is not None:
            processors.append(ForcedBOSTokenLogitsProcessor(config.forced_bos_token_id))
        if config.forced_eos_token_id is not None:
            processors.append(ForcedEOSTokenLogitsProcessor(1 + max_new_tokens, config.forced_eos_token_id))
        return processors

    def generate(
        self, pixel_values: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int = 128
    ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy decoding until every row ends with EOS: token ids [B, T] (no start token) and their log-probs [B, T]."""
        return self.decode(self.encode(pixel_values, input_ids, attention_mask), max_new_tokens)

    def decode(self, encoded: dict[str, ort.OrtValue], max_new_tokens: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """The decoding half of :meth:`generate`, from :meth:`encode`'s output."""
        batch = encoded["encoder_hidden_states"].shape()[0]
        processors = self._logits_processors(max_new_tokens)
        sequences = torch.full((batch, 1), self.start_id, dtype=torch.long)
        unfinished = torch.ones(batch, dtype=torch.bool)
        past, log_probs = self.empty_past(batch), []
        for _ in range(max_new_tokens):
            logits, past = self.decode_step(encoded, sequences[:, -1:].numpy(), past)
            scores = processors(sequences, torch.from_numpy(logits))
            tokens = torch.where(unfinished, scores.argmax(-1), self.pad_id)  # finished rows get padding, as in generate
            log_probs.append(scores.log_softmax(-1).gather(-1, tokens[:, None]))
            sequences = torch.cat([sequences, tokens[:, None]], dim=1)
            unfinished &= ~torch.isin(tokens, self.eos_ids)
            if not unfinished.any():
                break
        return sequences[:, 1:].numpy(), torch.cat(log_probs, dim=1).numpy()

    def detect(
        self, images: Sequence[Image.Image | np.ndarray], prompts: Sequence[str] | str = "<OD>", max_new_tokens: int = 128,
        num_beams: int = 1,
    ) -> list[list[Detection]]:  # fmt: skip
        """Detections per image for one batch, as ``detection_inference.detect`` returns them (greedy only)."""
        if num_beams != 1:
            raise UsageError("the ONNX backend decodes greedily: use num_beams=1, or the torch backend for beam search")
        pil = [Image.fromarray(i) if isinstance(i, np.ndarray) else i for i in images]
        prompts = [prompts] * len(pil) if isinstance(prompts, str) else list(prompts)
        inputs = self.processor(text=prompts, images=pil, return_tensors="np", padding=True)
        tokens, log_probs = self.generate(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"], max_new_tokens)
        loc_ids = loc_token_ids(self.processor)
        return [
            parse_detections(tokens[i].tolist(), log_probs[i].tolist(), self.processor, image.width, image.height, loc_ids)
            for i, image in enumerate(pil)
        ]

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        """The scoring engine's detector interface (``inspect_core.inference.scoring.Detector``): ``<OD>`` on model-sized crops."""
        return self.detect(crops, "<OD>", max_new_tokens=max_new_tokens, num_beams=num_beams)
