"""Fine-tuning strategies for Florence-2 with peft.

- ``lora`` (default): LoRA adapters on every targeted linear layer, vision tower included; the base
  weights stay fixed, but no part of the model is left out of training.
- ``lora+vision``: the same adapters, plus the whole vision tower trainable.
- ``freeze-vision``: adapters on the encoder/decoder only; every vision-tower parameter has
  ``requires_grad=False`` (so it receives no gradient at all).
- ``full``: every parameter trainable, no adapters.
"""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import Florence2ForConditionalGeneration

from inspect_core.config import LoraSection
from inspect_core.errors import UsageError

VISION_PREFIX = "model.vision_tower."
STRATEGIES = ("lora", "lora+vision", "freeze-vision", "full")


def linear_module_names(model: nn.Module, include_vision: bool) -> list[str]:
    """Full names of the linear layers LoRA may target (never the output head)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name != "lm_head" and (include_vision or not name.startswith(VISION_PREFIX))
    ]


def _targets(model: nn.Module, lora: LoraSection, include_vision: bool) -> list[str]:
    if lora.target_modules == "all-linear":
        return linear_module_names(model, include_vision)
    names = [n for n in linear_module_names(model, include_vision) if n.split(".")[-1] in lora.target_modules]
    if not names:
        raise UsageError(f"lora.target_modules {lora.target_modules} match no linear layer of the model")
    return names


def apply_strategy(model: Florence2ForConditionalGeneration, lora: LoraSection) -> nn.Module:
    """Wrap or unfreeze ``model`` for training according to ``lora.strategy``."""
    if lora.strategy == "full":
        for parameter in model.parameters():
            parameter.requires_grad = True
        return model
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        use_rslora=lora.rslora,
        use_dora=lora.dora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        target_modules=_targets(model, lora, include_vision=lora.strategy != "freeze-vision"),
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    vision = peft_model.base_model.model.model.vision_tower
    for name, parameter in vision.named_parameters():
        if lora.strategy == "lora+vision":
            parameter.requires_grad = True
        elif lora.strategy == "freeze-vision":
            parameter.requires_grad = False
        else:  # lora: only the adapters inside the vision tower learn
            parameter.requires_grad = "lora_" in name
    return peft_model


def trainable_parameters(model: nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and prefix in n)


def merge_adapter(model: nn.Module) -> Florence2ForConditionalGeneration:
    """Fold LoRA weights into the base weights: a plain Florence-2 for serving and export."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
