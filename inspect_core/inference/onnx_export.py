"""Export a (merged) Florence-2 to ONNX graphs that onnxruntime runs for the whole greedy generation.

Two graphs, weights stored once:

- ``encoder.onnx``: ``pixel_values``, ``input_ids``, ``attention_mask`` -> ``encoder_hidden_states``,
  ``encoder_attention_mask`` and, per decoder layer, the cross-attention ``cross_key.{i}`` /
  ``cross_value.{i}``. Image features replace the ``<image>`` placeholder tokens exactly as the
  model's own forward does (same modules, same ``masked_scatter``). The cross-attention keys and values
  depend only on the encoder output, so they are computed here once per image instead of in every
  decoder step.
- ``decoder.onnx``: one decoder step with KV cache: ``input_ids`` [B, 1], ``encoder_hidden_states``,
  ``encoder_attention_mask``, ``past_key.{i}`` / ``past_value.{i}`` (self-attention, [B, heads, past, head_dim])
  and the cross keys/values -> ``logits`` [B, 1, vocab] and ``present_key.{i}`` / ``present_value.{i}``.
  The first step feeds empty past tensors (past length 0), so no separate ``decoder_init`` graph holds a
  second copy of the decoder weights. The graph is traced with a non-empty past: the cache's "is it
  empty?" test is a Python branch that tracing would otherwise freeze.

Batch, prompt length and past length are dynamic axes; the image size is the processor's. The exporter
is torch's TorchScript-based one (``dynamo=False``): it needs no ``onnxscript`` and handled every
Florence-2 op. Tested on the tiny model and the Florence-2-base architecture; a graph over ONNX's 2 GB
limit (Florence-2-large's encoder) makes torch write its weights as external data files beside it, a
path not tested here.

``quantize="int8"`` applies onnxruntime dynamic quantisation (int8 weights, activations quantised per
batch at run time) to the MatMul/Gemm ops; convolutions (DaViT patch embeddings and depthwise
position convs) stay fp32 because onnxruntime's integer convolution is slower than its fp32 one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import transformers
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image
from torch import nn
from transformers import Florence2ForConditionalGeneration, Florence2Processor
from transformers.cache_utils import EncoderDecoderCache

from inspect_core.errors import UsageError
from inspect_core.inference.onnx_backend import MANIFEST, OnnxFlorence, io_names
from inspect_core.model.calibration import CALIBRATION_FILE, model_vocabulary
from inspect_core.model.factory import EMBEDDED_MODELS
from inspect_core.model.lora import merge_adapter
from inspect_core.model.trained_model import load_trained, resolve_trained_source

GRAPHS = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
QUANTIZATIONS = ("int8",)
INT8_OP_TYPES = ["MatMul", "Gemm"]
_EXAMPLE_PAST = 3  # non-empty, see the module docstring


class EncoderGraph(nn.Module):
    """Vision tower + projector + text encoder, plus each decoder layer's cross-attention keys/values."""

    def __init__(self, model: Florence2ForConditionalGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        core = self.model.model
        embeds = core.get_input_embeddings()(input_ids)
        features = core.get_image_features(pixel_values).pooler_output.to(embeds.dtype)
        embeds = embeds.masked_scatter(core.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=features), features)
        hidden = core.language_model.encoder(attention_mask=attention_mask, inputs_embeds=embeds).last_hidden_state
        outputs = [hidden, attention_mask]
        for layer in core.language_model.decoder.layers:
            attention = layer.encoder_attn
            shape = (hidden.shape[0], hidden.shape[1], -1, attention.head_dim)
            outputs += [attention.k_proj(hidden).view(shape).transpose(1, 2), attention.v_proj(hidden).view(shape).transpose(1, 2)]
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One decoder step through the model's own decoder, its cache rebuilt from flat past tensors."""

    def __init__(self, model: Florence2ForConditionalGeneration) -> None:
        super().__init__()
        self.model = model
        self.layers = len(model.model.language_model.decoder.layers)

    def forward(
        self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        # Per layer: self key, self value, cross key, cross value. A non-empty cross cache is marked as
        # computed, so the decoder reuses it instead of projecting encoder_hidden_states again.
        cache = EncoderDecoderCache([tuple(past[4 * i : 4 * i + 4]) for i in range(self.layers)])
        out = self.model.model.language_model.decoder(
            input_ids=input_ids, encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=cache, use_cache=True,
        )  # fmt: skip
        present = [t for layer in out.past_key_values.self_attention_cache.layers for t in (layer.keys, layer.values)]
        return (self.model.lm_head(out.last_hidden_state), *present)


def source_fingerprint(model_dir: Path | str) -> str | None:
    """sha256 over a model folder's config, processor and weight files: tells whether an export is stale."""
    folder = EMBEDDED_MODELS.get(str(model_dir), Path(model_dir))
    if not folder.is_dir():
        return None  # a hub id
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _example_inputs(processor: Florence2Processor) -> dict[str, torch.Tensor]:
    """Batch of 2 with two prompt lengths: batch and padding are traced as general, not baked in."""
    size = processor.image_processor.size
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size["height"], size["width"], 3), dtype=np.uint8)) for _ in range(2)]
    return dict(processor(text=["<OD>", "<CAPTION>"], images=images, return_tensors="pt", padding=True))


def _export_graphs(model: Florence2ForConditionalGeneration, processor: Florence2Processor, out: Path, opset: int) -> dict:
    """Trace both graphs; returns the torch outputs on the example inputs, for the parity check."""
    text = model.config.text_config
    layers, heads = text.decoder_layers, text.decoder_attention_heads
    names = io_names(layers)
    inputs = _example_inputs(processor)
    encoder, decoder = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    encoder_args = (inputs["pixel_values"].float(), inputs["input_ids"], inputs["attention_mask"])
    batch, seq = {0: "batch"}, {0: "batch", 1: "encoder_sequence"}
    per_head = {0: "batch", 2: "encoder_sequence"}
    encoder_axes = {"pixel_values": batch} | {
        n: seq for n in ("input_ids", "attention_mask", "encoder_hidden_states", "encoder_attention_mask")
    }
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        encoded = encoder(*encoder_args)
        past = []
        for i in range(layers):
            self_kv = [torch.randn(2, heads, _EXAMPLE_PAST, text.d_model // heads, generator=generator) for _ in range(2)]
            past += [*self_kv, encoded[2 + 2 * i], encoded[3 + 2 * i]]
        step_ids = torch.full((2, 1), text.decoder_start_token_id, dtype=torch.long)
        decoder_args = (step_ids, encoded[0], encoded[1], *past)
        logits = decoder(*decoder_args)[0]
    decoder_axes = {
        "input_ids": batch, "encoder_hidden_states": seq, "encoder_attention_mask": seq, "logits": batch,
        **{n: ({0: "batch", 2: "past_sequence"} if n.startswith("past") else per_head) for n in names["decoder_inputs"][3:]},
        **{n: {0: "batch", 2: "present_sequence"} for n in names["decoder_outputs"][1:]},
    }  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches, checked by the parity run
        torch.onnx.export(
            encoder, encoder_args, str(out / GRAPHS["encoder"]), dynamo=False, opset_version=opset,
            input_names=names["encoder_inputs"], output_names=names["encoder_outputs"],
            dynamic_axes=encoder_axes | {n: per_head for n in names["encoder_outputs"][2:]},
        )  # fmt: skip
        torch.onnx.export(
            decoder, decoder_args, str(out / GRAPHS["decoder"]), dynamo=False, opset_version=opset,
            input_names=names["decoder_inputs"], output_names=names["decoder_outputs"], dynamic_axes=decoder_axes,
        )  # fmt: skip
    return {"encoder_args": encoder_args, "hidden": encoded[0], "step_ids": step_ids, "past": past, "logits": logits[:, -1]}


def _parity(out: Path, reference: dict) -> dict[str, float]:
    """Max abs difference of the written graphs from PyTorch on the example inputs (encoder; a step with past)."""
    runtime = OnnxFlorence(out)
    encoded = runtime.encode(*(t.numpy() for t in reference["encoder_args"]))
    names = runtime.names["decoder_inputs"][3:]
    past = {n: onnxruntime.OrtValue.ortvalue_from_numpy(t.numpy()) for n, t in zip(names, reference["past"]) if n.startswith("past")}
    logits, _ = runtime.decode_step(encoded, reference["step_ids"].numpy(), past)
    hidden = encoded["encoder_hidden_states"].numpy()
    return {
        "encoder_hidden_max_abs_diff": float(np.abs(hidden - reference["hidden"].numpy()).max()),
        "step_logits_max_abs_diff": float(np.abs(logits - reference["logits"].numpy()).max()),
    }


def export_model(
    model: Florence2ForConditionalGeneration, processor: Florence2Processor, out: Path, quantize: str | None = None, opset: int = 17,
    source: dict | None = None,
) -> dict:  # fmt: skip
    """Write the graphs, processor, generation config and manifest of an in-memory model (made fp32 in place) to ``out``."""
    if quantize not in (None, *QUANTIZATIONS):
        raise UsageError(f"unknown quantization {quantize!r}: use one of {', '.join(QUANTIZATIONS)} or none")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    reference = _export_graphs(model, processor, out, opset)
    if quantize == "int8":
        for name in GRAPHS.values():
            quantized = out / f"{name}.int8"
            quantize_dynamic(out / name, quantized, op_types_to_quantize=INT8_OP_TYPES, weight_type=QuantType.QInt8)
            quantized.replace(out / name)
    processor.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    text = model.config.text_config
    size = processor.image_processor.size
    manifest = {
        "format": "inspect-core-onnx/1",
        "opset": opset,
        "quantization": quantize,
        "graphs": GRAPHS,
        "graph_mb": {k: round((out / v).stat().st_size / 2**20, 1) for k, v in GRAPHS.items()},
        "source": source or {},
        "decoder": {
            "layers": text.decoder_layers,
            "heads": text.decoder_attention_heads,
            "head_dim": text.d_model // text.decoder_attention_heads,
        },
        "image_size": [size["height"], size["width"]],
        "exporter": "torch.onnx.export(dynamo=False)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["parity_vs_torch"] = _parity(out, reference)
    manifest["export_s"] = round(time.perf_counter() - started, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_onnx(model_dir: Path, out: Path, quantize: str | None = None, opset: int = 17, image_size: int | None = None) -> dict:
    """Export a model folder (LoRA checkpoints are merged first), ``tiny`` or a hub id; returns the manifest.

    ``image_size`` (the recipe's model.image_size; None: the size the model was saved with) is the input
    side the graphs are traced at, written to the manifest and the exported processor.
    """
    model, processor = load_trained(model_dir, image_size)
    folder = Path(resolve_trained_source(str(model_dir)))
    vocabulary = model_vocabulary(folder) if folder.is_dir() else None
    source: dict = {"model": str(model_dir), "fingerprint": source_fingerprint(model_dir)}
    if vocabulary:  # an open-vocabulary source (a hub model, an uncalibrated checkpoint) has none to carry
        source["classes"] = list(vocabulary)
    manifest = export_model(merge_adapter(model), processor, out, quantize, opset, source)
    if (folder / CALIBRATION_FILE).is_file():  # the export scores with the same confidences and thresholds as its source
        shutil.copyfile(folder / CALIBRATION_FILE, out / CALIBRATION_FILE)
    return manifest
