"""Fine-tune Florence-2 on a built dataset: LoRA strategies, schedules, checkpoints, resume, early stop.

Each epoch visits the training records in the dataset's task order (:mod:`inspect_core.task_mixing`)
with online augmentation re-seeded per epoch, then scores the validation split (OD mAP@50, or the
validation loss when it has no objects). ``latest/`` is rewritten after every epoch with everything
needed to resume exactly (adapter, optimizer, scheduler, RNG states, epoch); ``best/`` holds the best
epoch. A non-finite loss stops the run and keeps ``best/``. Per-epoch metrics go to ``metrics.json``
and a loss-curve PNG.
"""

from __future__ import annotations

import functools
import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader

from inspect_core.config import InspectConfig
from inspect_core.evaluation import evaluate_split
from inspect_core.lora_adapters import apply_strategy
from inspect_core.lr_schedules import lr_multiplier
from inspect_core.model_factory import load_florence
from inspect_core.precision import use_bf16
from inspect_core.trained_model import save_checkpoint
from inspect_core.training_batches import encode_batch
from inspect_core.training_data import FlorenceTaskDataset, TaskOrderSampler, augmenter_from_config

STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"


@dataclass
class TrainResult:
    output_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_metric: float | None
    metric_name: str
    stopped: str  # "completed", "early-stopping", "non-finite loss ..."
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self) | {"output_dir": str(self.output_dir)}


def checkpoint_vision_blocks(model: nn.Module) -> int:
    """Recompute DaViT block activations in the backward pass (transformers only does the text side)."""
    vision = next(m for name, m in model.named_modules() if name.endswith("vision_tower"))
    count = 0
    for stage in vision.blocks:
        for block in stage:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
            count += 1
    return count


def _autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast where asked for, or on ``auto`` where the chip has bf16 units (CUDA, AMX or AVX512-BF16 CPUs); else fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(precision, device))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def plot_losses(history: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if any(h.get("valid_loss") is not None for h in history):
        ax.plot(epochs, [h.get("valid_loss") for h in history], marker="o", label="valid loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


@torch.inference_mode()
def _validation_loss(model: nn.Module, processor, data: FlorenceTaskDataset, batch_size: int, device: torch.device) -> float | None:
    if len(data) == 0:
        return None
    model.eval()
    total, batches = 0.0, 0
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        inputs = encode_batch(processor, [p for p, _x, _s in items], [x for _p, x, _s in items], [s for _p, _x, s in items])
        total += model(**{k: v.to(device) for k, v in inputs.items()}).loss.item()
        batches += 1
    return total / batches


def train(
    config: InspectConfig,
    dataset_dir: Path,
    output_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model.name`` on ``dataset_dir``; checkpoints land in ``output_dir``."""
    settings = config.train
    output_dir = Path(output_dir or settings.output_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state_path = output_dir / "latest" / STATE_FILE
    if resume and not state_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {state_path}")
    if not resume and output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} already holds a run; pass --resume to continue it or choose another --output")
    output_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    random.seed(settings.seed)
    model, processor = load_florence(config.model.name)
    model = apply_strategy(model, config.lora).to(device)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        checkpoint_vision_blocks(model)

    manifest = json.loads((Path(dataset_dir) / "dataset.json").read_text())
    train_data = FlorenceTaskDataset(dataset_dir, "train")
    valid_data = FlorenceTaskDataset(dataset_dir, "valid")
    sampler = TaskOrderSampler(train_data.records, manifest["order"], settings.epochs, settings.seed)
    loader = DataLoader(train_data, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.num_workers, collate_fn=list)
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / settings.batch_size) / settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(settings.schedule, total_steps, int(settings.warmup_ratio * total_steps), settings.anneal_fraction)
    )
    has_objects = any(a.objects for a in (valid_data.annotation(i) for i in range(len(valid_data))))
    # Best checkpoint by validation mAP; without labelled validation objects by validation loss, and
    # without a validation split at all by training loss.
    metric_name = "map50" if has_objects else "neg_valid_loss" if len(valid_data) else "neg_train_loss"
    history: list[dict] = []
    best_metric: float | None = None
    best_epoch: int | None = None
    stale_epochs = 0
    start_epoch = 0
    if resume:
        state = torch.load(state_path, weights_only=False)
        weights = output_dir / "latest" / "adapter_model.safetensors"
        if weights.is_file():
            set_peft_model_state_dict(model, load_file(weights))
        else:
            model.load_state_dict(load_file(output_dir / "latest" / "model.safetensors"), strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_metric, best_epoch, stale_epochs = state["best_metric"], state["best_epoch"], state["stale_epochs"]

    stopped = "completed"
    for epoch in range(start_epoch, settings.epochs):
        model.train()
        sampler.set_epoch(epoch)
        train_data.augmenter = augmenter_from_config(config.augment, seed=settings.seed * 1000 + epoch)
        running, batches = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for batch_index, batch in enumerate(loader):
            inputs = encode_batch(processor, [p for p, _x, _s in batch], [x for _p, x, _s in batch], [s for _p, _x, s in batch])
            with _autocast(settings.precision, device):
                loss = model(**{k: v.to(device) for k, v in inputs.items()}).loss
            if not torch.isfinite(loss):
                stopped = f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {batch_index + 1}; best checkpoint kept"
                break
            (loss / settings.grad_accum).backward()
            running += loss.item()
            batches += 1
            if (batch_index + 1) % settings.grad_accum == 0 or batch_index + 1 == len(loader):
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if on_step:
                on_step(batch_index + 1, len(loader))
        if stopped != "completed":
            break
        valid_loss = _validation_loss(model, processor, valid_data, settings.batch_size, device)
        entry = {"epoch": epoch + 1, "train_loss": running / max(batches, 1), "valid_loss": valid_loss, "lr": scheduler.get_last_lr()[0]}
        if has_objects:
            report = evaluate_split(model, processor, dataset_dir, "valid", settings.batch_size, settings.max_new_tokens)
            entry |= {"map50": report.detection.map50, "map50_95": report.detection.map50_95}
        metric = entry["map50"] if has_objects else -(valid_loss if valid_loss is not None else entry["train_loss"])
        history.append(entry)
        improved = best_metric is None or metric > best_metric
        if improved:
            best_metric, best_epoch, stale_epochs = metric, epoch + 1, 0
        else:
            stale_epochs += 1
        save_checkpoint(model, processor, output_dir / "latest", config.model.name, config.lora.strategy)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(), "epoch": epoch,
             "history": history, "best_metric": best_metric, "best_epoch": best_epoch, "stale_epochs": stale_epochs},
            state_path,
        )  # fmt: skip
        if improved:
            shutil.rmtree(output_dir / "best", ignore_errors=True)
            shutil.copytree(output_dir / "latest", output_dir / "best", ignore=shutil.ignore_patterns(STATE_FILE))
        if on_epoch:
            on_epoch(entry)
        if settings.early_stopping_patience and stale_epochs >= settings.early_stopping_patience:
            stopped = f"early-stopping: no {metric_name} gain in {stale_epochs} epochs"
            break
    result = TrainResult(output_dir, len(history), best_epoch, best_metric, metric_name, stopped, history)
    (output_dir / METRICS_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if history:
        plot_losses(history, output_dir / "loss_curve.png")
    return result
