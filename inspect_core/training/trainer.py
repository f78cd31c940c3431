"""Fine-tune Florence-2 on a built dataset: LoRA strategies, schedules, checkpoints, resume, early stop.

The steps themselves are :func:`inspect_core.training.loop.run_loop`'s, shared with pretraining;
this module supplies the hooks that make them fine-tuning. Each epoch visits the training records in
the dataset's task order (:mod:`inspect_core.data.task_mixing`) with online augmentation re-seeded
per epoch (flips, rotation, crop, zoom, colour and copy-paste of the training split's defects, as the
recipe's ``augment:`` says), then scores the validation split. ``best/`` is chosen by validation
mAP@50, then validation loss, ties to the later epoch (:mod:`inspect_core.training.selection`: a
few validation images tie often). ``train.max_minutes`` fits the run into a time budget by shrinking
its epochs, task order and LR schedule after a few measured steps (:mod:`inspect_core.training.budget`).
``latest/`` is rewritten after every epoch with everything needed to resume exactly
(adapter, optimizer, scheduler, RNG states, epoch), atomically and with ``previous/`` kept as the
fallback (:mod:`inspect_core.training.checkpoints`); ``best/`` holds the best epoch. A non-finite loss
stops the run (the loop's policy) and keeps ``best/``. Per-epoch metrics go to ``metrics.json`` and a
loss-curve PNG. At the end, ``best/`` is calibrated on the recipe's ``calibration.split``
(:mod:`inspect_core.training.calibration`): ``calibration.json`` with its confidence map and operating thresholds.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from peft import set_peft_model_state_dict
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader

from inspect_core.config import InspectConfig
from inspect_core.data.augmentation import paste_sources
from inspect_core.model.factory import load_model
from inspect_core.model.lora import apply_strategy
from inspect_core.model.trained_model import save_checkpoint
from inspect_core.training.batches import encode_batch
from inspect_core.training.budget import Plan, TimeBudget
from inspect_core.training.calibration import calibrate_run
from inspect_core.training.checkpoints import (
    LATEST,
    PREVIOUS,
    STATE_FILE,
    clear_leftovers,
    leftovers_only,
    publish,
    resume_point,
    write_text_atomic,
)
from inspect_core.training.data import FlorenceTaskDataset, TaskOrderSampler, augmenter_from_config
from inspect_core.training.evaluation import evaluate_split
from inspect_core.training.loop import LoopHooks, LoopSettings, LoopState, NonFiniteLoss, StopReason, run_loop
from inspect_core.training.schedules import lr_multiplier
from inspect_core.training.selection import SELECTION_RULE, later_wins, selection_key

METRICS_FILE = "metrics.json"

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_metric: float | None
    metric_name: str
    stopped: StopReason
    history: list[dict] = field(default_factory=list)
    stop_detail: str = ""  # for people: which metric stalled, where the loss broke
    non_finite: NonFiniteLoss | None = None
    calibration: dict | None = None  # the confidence calibration fitted with best/ (inspect_core.training.calibration.calibrate_run)
    budget: dict | None = None  # train.max_minutes: the plan before and after, and where the run stopped (TimeBudget.record)
    selection: str = SELECTION_RULE

    def as_dict(self) -> dict:
        non_finite = self.non_finite.as_dict() if self.non_finite else None
        return asdict(self) | {"output_dir": str(self.output_dir), "stopped": self.stopped.value, "non_finite": non_finite}


def checkpoint_vision_blocks(model: nn.Module) -> int:
    """Recompute DaViT block activations in the backward pass (transformers only does the text side)."""
    vision = next(m for name, m in model.named_modules() if name.endswith("vision_tower"))
    count = 0
    for stage in vision.blocks:
        for block in stage:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
            count += 1
    return count


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


def _encode(processor, items: Sequence[tuple]) -> dict[str, torch.Tensor]:
    """The loader's collate function: (pixels, prefix, suffix) records to model inputs (in the workers, outside autocast)."""
    return encode_batch(processor, [p for p, _x, _s in items], [x for _p, x, _s in items], [s for _p, _x, s in items])


@torch.inference_mode()
def _validation_loss(model: nn.Module, processor, data: FlorenceTaskDataset, batch_size: int, device: torch.device) -> float | None:
    if len(data) == 0:
        return None
    model.eval()
    total, batches = 0.0, 0
    for start in range(0, len(data), batch_size):
        inputs = _encode(processor, [data[i] for i in range(start, min(start + batch_size, len(data)))])
        total += model(**{k: v.to(device) for k, v in inputs.items()}).loss.item()
        batches += 1
    return total / batches


def _steps(records: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps of an epoch of ``records``: the loop also steps on an epoch's last, partial accumulation."""
    return math.ceil(math.ceil(records / batch_size) / grad_accum)


def _selection_key(entry: dict, has_objects: bool) -> tuple[float, ...]:
    loss = entry["valid_loss"] if entry.get("valid_loss") is not None else entry["train_loss"]
    return selection_key(entry.get("map50") if has_objects else None, loss)


def _reported_metric(entry: dict, has_objects: bool) -> float:
    """The best epoch's ``metric_name`` value: its mAP@50, else its negated validation (or training) loss."""
    if has_objects:
        return entry["map50"]
    return -(entry["valid_loss"] if entry.get("valid_loss") is not None else entry["train_loss"])


def train(
    config: InspectConfig,
    dataset_dir: Path,
    output_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model.name`` on ``dataset_dir``; checkpoints land in ``output_dir``.

    ``on_step`` gets (optimizer steps done, steps planned for the run) after every step (the plan
    shrinks under ``train.max_minutes``); ``on_epoch`` each epoch's entry.
    """
    settings = config.train
    output_dir = Path(output_dir or settings.output_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    point = None
    if resume and not (output_dir / LATEST).is_dir() and not (output_dir / PREVIOUS).is_dir():
        if not leftovers_only(output_dir):
            raise FileNotFoundError(f"--resume: no checkpoint at {output_dir / LATEST / STATE_FILE}")
        log.warning("warning: %s holds no complete checkpoint (the run stopped before its first); starting it from epoch 1", output_dir)
        clear_leftovers(output_dir)
    elif resume:
        point = resume_point(output_dir)  # read before the model loads: an unusable run folder fails fast
    if not resume and output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} already holds a run; pass --resume to continue it or choose another --out")
    output_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    random.seed(settings.seed)
    model, processor = load_model(config.model)
    model = apply_strategy(model, config.lora).to(device)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        checkpoint_vision_blocks(model)

    manifest = json.loads((Path(dataset_dir) / "dataset.json").read_text())
    train_data = FlorenceTaskDataset(dataset_dir, "train")
    valid_data = FlorenceTaskDataset(dataset_dir, "valid")
    sampler = TaskOrderSampler(train_data.records, manifest["order"], settings.epochs, settings.seed)
    loader = DataLoader(train_data, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.num_workers,
                        collate_fn=functools.partial(_encode, processor))  # fmt: skip
    steps_per_epoch = _steps(len(train_data), settings.batch_size, settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    budget = None
    if settings.max_minutes is not None:
        # Growing the plan leaves the LR alone only in constant-then-anneal's constant phase.
        grow_until = 1 - settings.anneal_fraction if settings.schedule == "constant-then-anneal" else 0.0
        budget = TimeBudget(settings.max_minutes, settings.epochs, steps_per_epoch,
                            eval_batches=math.ceil(len(valid_data) / settings.batch_size), grow_until=grow_until)  # fmt: skip

        def follow_plan(plan: Plan) -> None:  # the task order and the epochs follow the budget's plan
            sampler.replan(plan.epochs, min(len(train_data), plan.last_epoch_steps * settings.grad_accum * settings.batch_size))

        budget.on_replan = follow_plan
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = int(settings.warmup_ratio * total_steps)
    multiplier = (budget.multiplier(settings.schedule, settings.warmup_ratio, settings.anneal_fraction) if budget
                  else lr_multiplier(settings.schedule, total_steps, warmup, settings.anneal_fraction))  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    has_objects = any(a.objects for a in (valid_data.annotation(i) for i in range(len(valid_data))))
    # Best checkpoint by validation mAP, then validation loss (selection.py); without labelled validation
    # objects by validation loss, and without a validation split at all by training loss.
    metric_name = "map50" if has_objects else "neg_valid_loss" if len(valid_data) else "neg_train_loss"
    pasted = paste_sources(train_data.annotation(i) for i in range(len(train_data))) if config.augment.copy_paste > 0 else None
    history: list[dict] = []
    state = LoopState()
    if point is not None:
        saved = point.state
        if point.adapter:
            set_peft_model_state_dict(model, point.weights)
        else:
            model.load_state_dict(point.weights, strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        history = saved["history"]
        best_metric = saved["best_metric"]
        if best_metric is not None and not isinstance(best_metric, tuple) and saved["best_epoch"]:  # a run saved before selection keys
            best_metric = _selection_key(history[saved["best_epoch"] - 1], has_objects)
        if budget is not None and saved.get("budget"):
            budget.load_state_dict(saved["budget"])
            follow_plan(budget.plan)
        state = LoopState(epoch=saved["epoch"] + 1, step=scheduler.last_epoch, best_metric=best_metric,
                          best_at=saved["best_epoch"], stale_evaluations=saved["stale_epochs"])  # fmt: skip

    def start_epoch(state: LoopState) -> None:
        sampler.set_epoch(state.epoch)
        train_data.augmenter = augmenter_from_config(config.augment, seed=settings.seed * 1000 + state.epoch, paste_from=pasted)

    evaluation_started = {"at": 0.0}

    def evaluate(state: LoopState) -> tuple[float, ...]:
        evaluation_started["at"] = budget.clock() if budget else 0.0
        valid_loss = _validation_loss(model, processor, valid_data, settings.batch_size, device)
        entry = {"epoch": state.epoch + 1, "step": state.step, "train_loss": state.epoch_loss, "valid_loss": valid_loss,
                 "lr": scheduler.get_last_lr()[0]}  # fmt: skip
        if has_objects:
            report = evaluate_split(model, processor, dataset_dir, "valid", settings.batch_size, settings.max_new_tokens)
            entry |= {"map50": report.detection.map50, "map50_95": report.detection.map50_95}
        history.append(entry)
        return _selection_key(entry, has_objects)

    def save(state: LoopState, improved: bool) -> None:
        trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                         "epoch": state.epoch, "history": history, "best_metric": state.best_metric, "best_epoch": state.best_at,
                         "stale_epochs": state.stale_evaluations, "budget": budget.state_dict() if budget else None}  # fmt: skip

        def write(folder: Path) -> None:
            save_checkpoint(model, processor, folder, config.model.name, config.lora.strategy, manifest["classes"])
            torch.save(trainer_state, folder / STATE_FILE)

        publish(output_dir, write, improved)  # whole and flushed, then renamed in: a kill leaves latest/ or previous/ usable
        if budget:  # an epoch's end costs its evaluation and its checkpoints
            budget.after_evaluation(state, budget.clock() - evaluation_started["at"])
        if on_epoch:
            on_epoch(history[-1])

    reported = {"step": None}

    def batch_end(state: LoopState) -> None:
        if budget:  # a shortened epoch has fewer batches than the loader said when it started
            state.batches_in_epoch = math.ceil(len(sampler) / settings.batch_size)
        if on_step and state.step != reported["step"]:
            reported["step"] = state.step
            on_step(state.step, budget.plan.total_steps if budget else total_steps)

    hooks = LoopHooks(
        batches=lambda _state: loader,
        loss=lambda inputs, _state: model(**{k: v.to(device) for k, v in inputs.items()}).loss,
        evaluate=evaluate,
        on_epoch_start=start_epoch,
        on_batch_end=batch_end,
        on_evaluated=save,
        is_better=later_wins,
        should_stop=budget.check if budget else None,
    )
    loop = LoopSettings(grad_accum=settings.grad_accum, precision=settings.precision, max_epochs=settings.epochs,
                        early_stopping_patience=settings.early_stopping_patience)  # fmt: skip
    state = run_loop([model], optimizer, scheduler, hooks, loop, state, device)
    details = []
    if state.stop_reason is StopReason.EARLY_STOPPING:
        details.append(f"no {metric_name} gain in {state.stale_evaluations} epochs")
    elif state.non_finite:
        details.append(f"{state.non_finite.describe()}; best checkpoint kept")
    if budget:
        details.append(budget.describe(state))
    best_metric = _reported_metric(history[state.best_at - 1], has_objects) if state.best_at else None
    result = TrainResult(output_dir, len(history), state.best_at, best_metric, metric_name, state.stop_reason, history,
                         "; ".join(details), state.non_finite, budget=budget.record(state) if budget else None)  # fmt: skip
    write_text_atomic(output_dir / METRICS_FILE, json.dumps(result.as_dict(), indent=2) + "\n")
    if history:
        plot_losses(history, output_dir / "loss_curve.png")
    # Calibrate the finished run's best/ (and latest/) on the calibration split: metrics.json is written
    # first, so a run whose calibration fails still records its training; `evaluate --calibrate` redoes it.
    result.calibration = calibrate_run(config, dataset_dir, output_dir)
    if result.calibration is not None:
        write_text_atomic(output_dir / METRICS_FILE, json.dumps(result.as_dict(), indent=2) + "\n")
    return result
