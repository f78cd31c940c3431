"""Lean greedy decoding for Florence-2: the vision tower and encoder once per batch, then a bare decoder-step loop.

Why: for a small model the decoder loop of ``generate`` spends most of its time outside arithmetic. Per token it rebuilds
the attention masks, grows a dynamic cache by concatenating every layer's keys and values, runs the
logits processors and stopping criteria and passes through output-recording wrappers; the tiny
model's decoder step itself is a few MFLOP (2.8 MFLOP a frame and token). The roofline in
``benchmarks/scoring_throughput.py`` measures the split. Measured on the idle 2-core EPYC, tiny model,
batch 8, 16 frames: the decoder took 4.4 ms a frame here against 6.6 ms inside ``generate`` (fp32;
bf16 4.2 against 6.5), the whole model 1.08x (fp32) and 1.14x (bf16) faster: the vision tower
(1.19 of the frame's 1.40 GFLOP, 21 ms in fp32) is most of what is left.

Why the answers stay those of greedy ``generate`` (``tests/inference/test_greedy.py`` checks token ids
and scores): the loop calls the model's own modules (so an unmerged LoRA adapter and bf16 behave as
they do in ``generate``) with the same operations per row: token embedding plus learned position,
post-norm self-attention over the cached keys, cross-attention over the encoder states, the FFN, the
LM head; logits to fp32 and argmax; the one logits processor Florence-2's generation config sets
(EOS forced at the last step) reproduced; padding after EOS. A generation config asking for any
other processor (``no_repeat_ngram_size``, repetition penalties, a minimum length, ...) is refused by
:func:`lean_unsupported`, and the caller falls back to ``generate``.

What is leaner:

- the self-attention cache is preallocated and written in place (never concatenated), the
  cross-attention keys and values are projected once per batch;
- early exit: rows that reached EOS leave the batch. They are compacted out once a quarter of the
  live rows finished, so the cross-attention cache is copied a few times per batch, not once per row;
  until then a finished row costs one more row of a step that runs anyway. Rows keep their order
  in the output. With rows leaving as they finish, sorting frames by expected answer length gains
  little more, so the loop does not reorder.
- no ``torch.compile`` on the CPU: with the shapes dynamic (rows leave, the cache grows) the compiled
  step ran slower (12 ms a frame against 7 ms, after 38 s of compiling);
- ``static=True`` (the GPU path): attention runs over the whole preallocated cache with a mask, so
  every step has the same shapes and ``torch.compile(mode="reduce-overhead")`` can capture it as a
  CUDA graph; rows then stay in the batch until all finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Generation-config fields that add a logits processor greedy ``generate`` would apply, with the value
# that adds none. The lean loop reproduces only ``forced_eos_token_id``.
_NEUTRAL = {
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "bad_words_ids": (None,),
    "sequence_bias": (None,),
    "forced_bos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "exponential_decay_length_penalty": (None,),
    "remove_invalid_values": (None, False),
    "renormalize_logits": (None, False),
    "guidance_scale": (None, 1.0),
    "watermarking_config": (None,),
}
COMPACT_SHARE = 0.25  # compact the batch once this share of its live rows finished
STATIC_CHECK_EVERY = 4  # static shapes: look whether every row finished every this many steps (each look syncs a GPU)


def unwrap(model: nn.Module) -> nn.Module:
    """The Florence2ForConditionalGeneration under a peft wrapper (its LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lean_unsupported(model: nn.Module) -> str | None:
    """Why the lean loop would not reproduce greedy ``generate`` for this model, or None when it does."""
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) != "florence2" or getattr(config.text_config, "model_type", None) != "bart":
        return f"not a Florence-2 model with a BART language model ({getattr(config, 'model_type', type(inner).__name__)})"
    generation = inner.generation_config
    for name, neutral in _NEUTRAL.items():
        value = getattr(generation, name, None)
        if value not in neutral:
            return f"the generation config sets {name}={value!r}, which only generate applies"
    return None


@dataclass
class GreedyResult:
    """What greedy ``generate`` returns, per row in input order.

    ``tokens``: generated ids without the start token, padded after EOS, as long as the longest row;
    ``log_probs``: each token's log-probability under the (processed) logits, 0 after EOS;
    ``lengths``: tokens up to and including EOS per row.
    """

    tokens: torch.Tensor
    log_probs: torch.Tensor
    lengths: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)


class LeanGreedy:
    """Greedy decoding of one Florence-2 model.

    ``static``: fixed shapes (for CUDA graphs); ``compile``: a ``torch.compile`` backend for the decoder
    step (``inductor``; ``eager`` only traces, as the tests do), None: eager; ``clock``: time the parts.
    """

    def __init__(
        self, model: nn.Module, static: bool = False, compile: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        if reason := lean_unsupported(model):
            raise ValueError(f"lean decoding cannot reproduce generate here: {reason}")
        self.model = unwrap(model)
        text = self.model.config.text_config
        generation = self.model.generation_config
        self.decoder = self.model.model.language_model.decoder
        self.encoder = self.model.model.language_model.encoder
        # The special tokens as generate reads them: from the generation config only (no EOS there: never stops).
        eos = generation.eos_token_id
        self.eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        pad = generation.pad_token_id if generation.pad_token_id is not None else (self.eos[0] if self.eos else None)
        self.pad = int(pad if pad is not None else text.pad_token_id)
        start = generation.decoder_start_token_id if generation.decoder_start_token_id is not None else generation.bos_token_id
        if start is None:
            raise ValueError("the generation config has neither decoder_start_token_id nor bos_token_id")
        self.start = int(start)
        self.forced_eos = generation.forced_eos_token_id
        self.static = static
        self.clock = clock
        self.step = self._step
        if compile:
            graphs = static and compile == "inductor" and self.model.device.type == "cuda"
            self.step = torch.compile(self._step, backend=compile, mode="reduce-overhead" if graphs else None, dynamic=not static)

    # -- prefill: vision tower and encoder, once per batch ---------------------------------------------

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.model.get_image_features(pixel_values=pixel_values).pooler_output

    def encode(self, input_ids: torch.Tensor, image_features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The encoder states as ``generate`` computes them: prompt embeddings with the image features scattered in."""
        embeds = self.model.get_input_embeddings()(input_ids)
        features = image_features.to(embeds.device, embeds.dtype)
        mask = self.model.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=features)
        embeds = embeds.masked_scatter(mask, features)
        return self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

    # -- one decoder step --------------------------------------------------------------------------------

    def cross_cache(self, encoded: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the cross-attention keys and values ([batch, heads, source, head_dim]): projected once."""
        batch, source = encoded.shape[:2]
        cache = []
        for layer in self.decoder.layers:
            attention = layer.encoder_attn
            shape = (batch, source, -1, attention.head_dim)
            keys = attention.k_proj(encoded).view(shape).transpose(1, 2)
            values = attention.v_proj(encoded).view(shape).transpose(1, 2)
            cache.append((keys, values))
        return cache

    def _step(
        self, tokens: torch.Tensor, position: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
        cross: list[tuple[torch.Tensor, torch.Tensor]], source_mask: torch.Tensor | None, self_mask: torch.Tensor | None,
        length: int,
    ) -> torch.Tensor:  # fmt: skip
        """Logits (fp32) for the next token of each row; writes this token's keys and values at ``position``.

        ``keys``/``values``: [layers, batch, heads, max_len, head_dim]; attention reads the first ``length``
        positions (all of them, masked by ``self_mask``, when static).
        """
        decoder = self.decoder
        hidden = decoder.embed_tokens(tokens[:, None]) + decoder.embed_positions.weight[position + decoder.embed_positions.offset]
        hidden = decoder.layernorm_embedding(hidden)
        batch = hidden.shape[0]
        for index, layer in enumerate(decoder.layers):
            attention = layer.self_attn
            shape = (batch, 1, -1, attention.head_dim)
            query = attention.q_proj(hidden).view(shape).transpose(1, 2)
            keys[index].index_copy_(2, position.view(1), attention.k_proj(hidden).view(shape).transpose(1, 2))
            values[index].index_copy_(2, position.view(1), attention.v_proj(hidden).view(shape).transpose(1, 2))
            seen_k, seen_v = keys[index, :, :, :length], values[index, :, :, :length]
            out = F.scaled_dot_product_attention(query, seen_k, seen_v, attn_mask=self_mask, scale=attention.scaling)
            hidden = layer.self_attn_layer_norm(hidden + attention.out_proj(out.transpose(1, 2).reshape(batch, 1, -1)))
            attention = layer.encoder_attn
            query = attention.q_proj(hidden).view(shape).transpose(1, 2)
            cross_k, cross_v = cross[index]
            out = F.scaled_dot_product_attention(query, cross_k, cross_v, attn_mask=source_mask, scale=attention.scaling)
            hidden = layer.encoder_attn_layer_norm(hidden + attention.out_proj(out.transpose(1, 2).reshape(batch, 1, -1)))
            hidden = layer.final_layer_norm(hidden + layer.fc2(layer.activation_fn(layer.fc1(hidden))))
        return self.model.lm_head(hidden[:, 0]).float()

    # -- the loop ----------------------------------------------------------------------------------------

    def decode(self, encoded: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int) -> GreedyResult:
        """Greedy tokens for each row of ``encoded`` (the encoder states), rows in input order."""
        device, batch = encoded.device, encoded.shape[0]
        text = self.model.config.text_config
        layers, heads = text.decoder_layers, text.decoder_attention_heads
        head_dim = text.d_model // heads
        cross = self.cross_cache(encoded)
        source_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            source_mask = attention_mask[:, None, None, :].bool()
        keys = torch.zeros(layers, batch, heads, max_new_tokens, head_dim, dtype=encoded.dtype, device=device)
        values = torch.zeros_like(keys)
        if self.static and self.step is not self._step:  # CUDA graphs read these in place rather than copying them each step
            for tensor in (keys, values, *(t for pair in cross for t in pair)):
                torch._dynamo.mark_static_address(tensor)
        out_tokens = torch.full((batch, max_new_tokens), self.pad, dtype=torch.long, device=device)
        out_logp = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=device)
        lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
        eos = torch.tensor(self.eos, dtype=torch.long, device=device)
        rows = torch.arange(batch, device=device)  # the output row of each live batch row
        alive = torch.ones(batch, dtype=torch.bool, device=device)
        tokens = torch.full((batch,), self.start, dtype=torch.long, device=device)
        positions = torch.arange(max_new_tokens, device=device)
        for step in range(max_new_tokens):
            position = positions[step]
            if self.static:
                self_mask = (positions <= position).view(1, 1, 1, -1)
                logits = self.step(tokens, position, keys, values, cross, source_mask, self_mask, max_new_tokens)
            else:
                logits = self.step(tokens, position, keys, values, cross, source_mask, None, step + 1)
            if self.forced_eos is not None and step == max_new_tokens - 1:
                logits = torch.full_like(logits, -math.inf)
                logits[:, self.forced_eos] = 0
            tokens = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1).gather(1, tokens[:, None])[:, 0]
            # Written without reading a value back (no host sync on a GPU): finished rows record padding.
            out_tokens[rows, step] = torch.where(alive, tokens, self.pad)
            out_logp[rows, step] = torch.where(alive, logp, 0.0)
            finished = alive & torch.isin(tokens, eos)
            lengths[rows] = torch.where(finished, step + 1, lengths[rows])
            alive = alive & ~finished
            if self.static and step % STATIC_CHECK_EVERY:
                continue
            live = int(alive.sum())
            if live == 0:
                break
            if not self.static and batch - live >= max(1, math.ceil(COMPACT_SHARE * batch)):
                keep = alive.nonzero()[:, 0]
                keys = keys.index_select(1, keep)
                values = values.index_select(1, keep)
                cross = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in cross]
                source_mask = source_mask.index_select(0, keep) if source_mask is not None else None
                rows, tokens, alive, batch = rows[keep], tokens[keep], alive[keep], live
        steps = int(lengths.max())  # the step the last row finished (static: the loop may have run a few more)
        return GreedyResult(out_tokens[:, :steps], out_logp[:, :steps], lengths)

    @torch.inference_mode()
    def generate(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int
    ) -> GreedyResult:
        """Vision tower and encoder once, then the decoder loop; ``seconds`` splits the time when a ``clock`` was given."""
        clock = self.clock
        started = clock() if clock else 0.0
        features = self.image_features(pixel_values)
        vision_done = clock() if clock else 0.0
        encoded = self.encode(input_ids, features, attention_mask)
        encoder_done = clock() if clock else 0.0
        result = self.decode(encoded, attention_mask, max_new_tokens)
        if clock:
            result.seconds = {"vision": vision_done - started, "encoder": encoder_done - vision_done, "decoder": clock() - encoder_done}
        return result
