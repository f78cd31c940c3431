"""Load Florence-2 models: the embedded tiny base, a local directory, or a Hugging Face hub id.

Only the native ``transformers`` classes are used (``Florence2ForConditionalGeneration``,
``Florence2Processor``); ``trust_remote_code`` is never set. Without network access a hub id fails
with a message that says how to use a local copy instead.

``image_size`` resizes the processor (its resize target and the number of ``<image>`` tokens it
inserts) rather than the model: the DaViT tower is convolutional with windowed attention, so one
checkpoint runs at any multiple of 32 its position table covers. The processor is saved with every
checkpoint and export, so what a model was trained at travels with it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.config import ModelSection
from inspect_core.errors import ModelLoadError, UsageError

EMBEDDED_MODEL = "tiny"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "tiny-fabric-base"
# The shipped models by name. ``tiny-randomised`` continued ``tiny`` with domain-randomised fabric: better on the
# project's own generator (mAP@50 0.862 vs 0.683) and on cloth it never saw (held-out family 0.541 vs 0.105), and
# the start of few-shot fine-tuning on real photographs (configs/real-fewshot.yaml). ``tiny`` stays the default:
# the demo's own test images score 0.711 from it and 0.522 from an earlier ``tiny-randomised`` run (its model card).
EMBEDDED_MODELS = {
    EMBEDDED_MODEL: EMBEDDED_MODEL_DIR,
    "tiny-randomised": EMBEDDED_MODEL_DIR.parent / "tiny-fabric-randomised",
}
KNOWN_HUB_IDS = (
    "florence-community/Florence-2-base",
    "florence-community/Florence-2-large",
    "florence-community/Florence-2-base-ft",
    "florence-community/Florence-2-large-ft",
)


def resolve_model_source(name: str) -> str:
    """``tiny`` (or another shipped name) -> its directory; a directory -> itself; anything else is taken as a hub id."""
    if name in EMBEDDED_MODELS:
        folder = EMBEDDED_MODELS[name]
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"the embedded model {name!r} is missing from {folder}; rebuild it with: inspect-core pretrain-tiny")
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json: not a Florence-2 model directory")
        return str(path)
    if not _could_be_hub_id(name):  # runs/train/best, ./model, /abs/path: a folder that is not there, not a download to suggest
        raise UsageError(
            f"model {name!r}: no such folder (relative paths are taken from {Path.cwd()}); give an existing model or "
            f"checkpoint folder, {' or '.join(repr(n) for n in EMBEDDED_MODELS)}, or a hub id such as {KNOWN_HUB_IDS[0]}"
        )
    return name


def _could_be_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a hub repo id (``org/name`` or ``name``), by the hub's own rule."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


VISION_STRIDE = 32  # total downsampling of the DaViT tower: one image token per 32x32 cell


def input_size(processor: Florence2Processor) -> int:
    """The side, in pixels, the processor resizes images to."""
    return int(processor.image_processor.size["height"])


def size_processor(processor: Florence2Processor, image_size: int | None, config: Florence2Config | None = None) -> Florence2Processor:
    """Set the processor's input side to ``image_size`` (None: leave it as saved), with the matching image-token count.

    ``config`` checks the size against the model's position table (``max_position_embeddings`` cells per side).
    """
    if image_size is None:
        return processor
    if image_size % VISION_STRIDE:
        raise ModelLoadError(f"model.image_size {image_size}: must be a multiple of {VISION_STRIDE}")
    cells = image_size // VISION_STRIDE
    limit = config.vision_config.max_position_embeddings if config is not None else None
    if limit is not None and cells > limit:
        raise ModelLoadError(f"model.image_size {image_size}: this model's position table covers at most {limit * VISION_STRIDE} px")
    images = processor.image_processor
    images.size = {"height": image_size, "width": image_size}
    images.image_seq_length = cells * cells + 1  # one token per cell plus the pooled one
    processor.num_image_tokens = images.image_seq_length
    return processor


def load_model(section: ModelSection, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """The recipe's base model (``model.name`` at ``model.revision``) with its processor at ``model.image_size``."""
    return load_florence(section.name, section.revision, dtype, device, image_size=section.image_size)


def load_florence(
    name: str,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """Model and processor by name; ``revision`` pins a hub revision, ``image_size`` sizes the processor."""
    source = resolve_model_source(name)
    if revision is not None and Path(source).exists():
        raise ModelLoadError(f"model.revision {revision!r} pins a hub revision, but {name!r} is a local directory: remove one of them")
    try:
        processor = AutoProcessor.from_pretrained(source, revision=revision)
        model = Florence2ForConditionalGeneration.from_pretrained(source, revision=revision, dtype=dtype)
    except OSError as exc:
        if Path(source).exists():
            raise ModelLoadError(f"cannot load the model in {source}: {exc}") from exc
        raise ModelLoadError(
            f"cannot load {name!r}{f' at revision {revision!r}' if revision else ''} from the Hugging Face hub ({type(exc).__name__}): "
            f"this machine is offline or HF_HUB_OFFLINE=1 "
            f"is set. On a connected machine run `hf download {name} --local-dir DIR`, copy DIR here and pass it as the "
            f"model (--model DIR, or model.name: DIR in the recipe). Known ids: {', '.join(KNOWN_HUB_IDS)}."
        ) from exc
    if not isinstance(processor, Florence2Processor):
        raise ModelLoadError(f"{source} has a {type(processor).__name__}, not a Florence2Processor")
    return model.to(device), size_processor(processor, image_size, model.config)
