"""Pretrain the embedded tiny Florence-2 on an endless stream of synthetic fabric.

Every step draws fresh generated images (no image is seen twice), mixes the three tasks (mostly
``<OD>``), and adds the auxiliary per-cell detection loss (:mod:`inspect_core.model.cell_detection_head`)
to the sequence loss. Periodic evaluation on a fixed set of held-out images (another seed) keeps the
best model by mAP@50; the result is a plain Florence-2 directory (safetensors + processor).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.data.annotations import AnnotatedImage
from inspect_core.data.florence_tasks import task_record
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, EVALUATION_SEEDS, generate_sample
from inspect_core.errors import UsageError
from inspect_core.inference.detector import detect, loc_token_ids
from inspect_core.model.cell_detection_head import CellDetectionHead, cell_loss, cell_targets, image_cell_states
from inspect_core.model.factory import load_florence
from inspect_core.model.tiny_florence import TINY_IMAGE_SIZE, build_tiny, save_pretrained, task_prompt_corpus
from inspect_core.training.batches import IGNORE_INDEX, encode_batch
from inspect_core.training.loop import LoopHooks, LoopSettings, LoopState, NonFiniteLoss, StopReason, run_loop
from inspect_core.training.metrics import MapResult, detection_map
from inspect_core.training.schedules import clocked, lr_multiplier

TASK_MIX = {"od": 0.8, "dense": 0.1, "grounding": 0.1}
EVAL_SEED_OFFSET = 10_000  # held-out images come from another seed than training images


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 6000
    batch_size: int = 8
    lr: float = 1.5e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    anneal_fraction: float = 0.25
    aux_weight: float = 1.0
    eval_every: int = 500
    eval_images: int = 64
    seed: int = 0
    time_limit_s: float | None = None
    init_from: str | None = None  # continue from a saved tiny model (e.g. the shipped one) instead of random weights
    od_only_fraction: float = 0.0  # the first part of training asks <OD> only: detection is the hard skill
    loc_sigma: float = 0.0  # soft location targets: Gaussian over neighbouring bins (0 = hard cross-entropy)
    multi_scale_fraction: float = 0.0  # share of training images rendered at 288-512 px and resized to the model's input
    randomised_fraction: float = 0.0  # share of training images in the randomised style (domain randomisation, issue 15)


def synthetic_images(
    seed: int, start: int, count: int, sizes: Sequence[int] | None = None, styles: Sequence[str] | None = None
) -> list[tuple[np.ndarray, AnnotatedImage]]:
    """Images ``start``.. of synthetic set ``seed``, at the model's side or at ``sizes`` (one per image), in the
    default style or in ``styles`` (one per image: ``default`` or ``randomised``).

    A larger image reaches the model through the processor's resize, as a camera frame does. The
    ``heldout`` style is refused: it is the test of generalisation, never training data.
    """
    styles = list(styles or ["default"] * count)
    if "heldout" in styles:
        raise UsageError("the heldout style is the generalisation test: pretraining never sees it")
    samples = []
    for index, size, style in zip(range(start, start + count), sizes or [TINY_IMAGE_SIZE] * count, styles):
        sample = generate_sample(seed, index, size=size, style=style)
        annotated = AnnotatedImage(Path(f"synthetic_{seed}_{index}.jpg"), size, size, sample.objects, caption=sample.caption)
        samples.append((sample.image, annotated))
    return samples


def training_sizes(rng: np.random.Generator, count: int, multi_scale_fraction: float) -> list[int]:
    """Image sides of one batch: the model's own, or (a ``multi_scale_fraction`` share) up to 2x larger.

    Trained on 256 px renderings only, the model lost most of its skill on the same cloth rendered at
    384 px and resized (held-out OD loss 2.4 -> 6.5): finer weave and averaged noise were new to it.
    """
    if multi_scale_fraction <= 0:  # draw nothing, so runs without it keep the random stream they always had
        return [TINY_IMAGE_SIZE] * count
    return [int(rng.integers(9, 17)) * 32 if rng.random() < multi_scale_fraction else TINY_IMAGE_SIZE for _ in range(count)]


def training_styles(rng: np.random.Generator, count: int, randomised_fraction: float) -> list[str]:
    """Styles of one batch: ``randomised`` for a ``randomised_fraction`` share, else ``default``."""
    if randomised_fraction <= 0:  # draw nothing, so runs without it keep the random stream they always had
        return ["default"] * count
    return ["randomised" if rng.random() < randomised_fraction else "default" for _ in range(count)]


def vocabulary_corpus(seed: int, count: int = 2000) -> list[str]:
    """Texts the tokenizer is trained on: task prompts plus generated descriptions and captions."""
    corpus = task_prompt_corpus() + list(DEFECT_CLASSES)
    for index in range(count):
        sample = generate_sample(seed, index, size=64, max_defects=4)
        corpus.append(sample.caption)
        corpus.extend(o.phrase for o in sample.objects)
    return corpus


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, loc_bin: torch.Tensor, loc_ids: torch.Tensor, sigma: float) -> torch.Tensor:
    """Token cross-entropy where a location target may be a Gaussian over nearby bins.

    With hard targets the 1,000 location tokens are 1,000 unrelated classes, each rarely seen; a soft
    target makes a near miss cost less than a far one, so coordinates are learnt like a regression.
    ``loc_bin`` maps token id -> bin (-1 for other tokens).
    """
    log_probs = logits.float().log_softmax(-1)
    valid = labels != IGNORE_INDEX
    safe = labels.clamp(min=0)
    loss = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    bins = loc_bin[safe]
    is_loc = valid & (bins >= 0)
    if sigma > 0 and is_loc.any():
        grid = torch.arange(len(loc_ids), device=logits.device, dtype=torch.float32)
        target = torch.exp(-((grid[None, :] - bins[is_loc, None].float()) ** 2) / (2 * sigma**2))
        target = target / target.sum(-1, keepdim=True)
        loss[is_loc] = -(target * log_probs[is_loc][:, loc_ids]).sum(-1)
    return loss[valid].mean()


def evaluate_detection(
    model: Florence2ForConditionalGeneration, processor: Florence2Processor, samples: list[tuple[np.ndarray, AnnotatedImage]],
    classes: tuple[str, ...] | list[str], batch_size: int = 16,
) -> MapResult:  # fmt: skip
    model.eval()
    predictions = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        predictions.extend(detect(model, processor, [pixels for pixels, _a in chunk], "<OD>", max_new_tokens=96))
    return detection_map([a.objects for _p, a in samples], predictions, classes)


def _od_inputs(processor: Florence2Processor, samples: list[tuple[np.ndarray, AnnotatedImage]]) -> dict[str, torch.Tensor]:
    records = [task_record(a, "od", a.image_path.name) for _p, a in samples]
    return encode_batch(processor, [p for p, _a in samples], [r.prefix for r in records], [r.suffix for r in records])


@dataclass(frozen=True)
class PretrainResult:
    best_map50: float  # NaN when no evaluation ran
    history: list[dict]
    stopped: StopReason
    steps: int
    stop_detail: str = ""
    non_finite: NonFiniteLoss | None = None

    def as_dict(self) -> dict:
        return {"best_map50": self.best_map50, "history": self.history, "stopped": self.stopped.value, "steps": self.steps,
                "stop_detail": self.stop_detail, "non_finite": self.non_finite.as_dict() if self.non_finite else None}  # fmt: skip


def pretrain_tiny(
    out: Path, settings: PretrainSettings, log: Callable[[dict], None] | None = None, progress: Callable[[int], None] | None = None
) -> PretrainResult:
    """Train from scratch; keeps the best model by held-out mAP@50 in ``out``; returns the metrics log.

    ``log`` gets each evaluation entry, ``progress`` the number of steps done after every step. The
    steps are :func:`~inspect_core.training.loop.run_loop`'s: this function supplies the endless
    synthetic stream, the auxiliary cell loss and the evaluation every ``eval_every`` steps.
    """
    if settings.seed in EVALUATION_SEEDS:
        raise UsageError(
            f"--seed {settings.seed} draws {EVALUATION_SEEDS[settings.seed]}: a model pretrained on it would be "
            "judged on images it was trained on; choose another seed"
        )
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    lineage: dict = {}
    if settings.init_from:
        model, processor = load_florence(settings.init_from)
        earlier = Path(settings.init_from) / "pretrain_metrics.json"
        if earlier.is_file():  # keep the history of the run continued from, for the model card
            lineage = {"continued_from": {k: v for k, v in json.loads(earlier.read_text()).items() if k != "history"}}
    else:
        model, processor = build_tiny(vocabulary_corpus(settings.seed), seed=settings.seed)
    grid = TINY_IMAGE_SIZE // 32
    head = CellDetectionHead(model.config.text_config.d_model, len(DEFECT_CLASSES))
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    held_out = synthetic_images(settings.seed + EVAL_SEED_OFFSET, 0, settings.eval_images)
    state = LoopState()  # its clock starts here
    multiplier = lr_multiplier("constant-then-anneal", settings.steps, settings.warmup_steps, settings.anneal_fraction)
    if settings.time_limit_s:
        multiplier = clocked(multiplier, settings.steps, lambda: state.elapsed() / settings.time_limit_s)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    history: list[dict] = []
    tasks, weights = list(TASK_MIX), list(TASK_MIX.values())
    loc_ids = torch.tensor(list(loc_token_ids(processor)))
    loc_bin = torch.full((len(processor.tokenizer),), -1, dtype=torch.long)
    loc_bin[loc_ids] = torch.arange(len(loc_ids))
    held_out_od = _od_inputs(processor, held_out)
    losses: dict[str, torch.Tensor] = {}

    def stream(_state: LoopState) -> Iterator[tuple[dict[str, torch.Tensor], list[AnnotatedImage]]]:
        """Fresh images every step, never one seen twice; tasks drawn from TASK_MIX (``<OD>`` only at first, if asked)."""
        for step in itertools.count():
            sizes = training_sizes(rng, settings.batch_size, settings.multi_scale_fraction)
            styles = training_styles(rng, settings.batch_size, settings.randomised_fraction)
            batch = synthetic_images(settings.seed, step * settings.batch_size, settings.batch_size, sizes, styles)
            od_only = step < settings.od_only_fraction * settings.steps
            records = [task_record(a, "od" if od_only else str(rng.choice(tasks, p=weights)), a.image_path.name) for _p, a in batch]
            records = [r or task_record(a, "od", a.image_path.name) for r, (_p, a) in zip(records, batch)]
            yield (
                encode_batch(processor, [p for p, _a in batch], [r.prefix for r in records], [r.suffix for r in records]),
                [a for _p, a in batch],
            )

    def loss(batch: tuple[dict[str, torch.Tensor], list[AnnotatedImage]], _state: LoopState) -> torch.Tensor:
        """Sequence loss plus the auxiliary per-cell detection loss on the encoder's image tokens."""
        inputs, annotations = batch
        output = model(**inputs)
        sequence = sequence_loss(output.logits, inputs["labels"], loc_bin, loc_ids, settings.loc_sigma)
        logits, boxes = head(image_cell_states(output.encoder_last_hidden_state, grid))
        target_labels, target_boxes = cell_targets(annotations, DEFECT_CLASSES, grid)
        aux = cell_loss(logits, boxes, target_labels, target_boxes)
        losses.update(sequence=sequence.detach(), aux=aux.detach())
        return sequence + settings.aux_weight * aux

    def evaluate(state: LoopState) -> float:
        result = evaluate_detection(model, processor, held_out, DEFECT_CLASSES)
        with torch.no_grad():
            held_out_loss = model(**held_out_od).loss.item()
        entry = {"step": state.step, "minutes": round(state.elapsed() / 60, 2), "loss": round(losses["sequence"].item(), 4),
                 "aux_loss": round(losses["aux"].item(), 4), "held_out_od_loss": round(held_out_loss, 4),
                 "lr": scheduler.get_last_lr()[0], **result.as_dict()}  # fmt: skip
        history.append(entry)
        if log:
            log(entry)
        return result.map50

    def keep_best(_state: LoopState, improved: bool) -> None:
        if improved:
            save_pretrained(model, processor, out)
            (out / "pretrain_metrics.json").write_text(
                json.dumps({"settings": asdict(settings), "best": history[-1], "history": history, **lineage}, indent=2)
            )

    hooks = LoopHooks(
        batches=stream,
        loss=loss,
        evaluate=evaluate,
        on_batch_end=(lambda state: progress(state.step)) if progress else None,
        on_evaluated=keep_best,
    )
    loop = LoopSettings(max_steps=settings.steps, time_limit_s=settings.time_limit_s, eval_every_steps=settings.eval_every)
    state = run_loop([model, head], optimizer, scheduler, hooks, loop, state)
    detail = ""
    if state.non_finite:
        kept = f"the best model so far is kept in {out}" if state.best_metric is not None else "no model was saved"
        detail = f"{state.non_finite.describe()}; {kept}"
    best = state.best_metric if state.best_metric is not None else math.nan
    return PretrainResult(best, history, state.stop_reason, state.step, detail, state.non_finite)


def _command(settings: dict) -> str:
    options = [f"--steps {settings['steps']}", f"--batch-size {settings['batch_size']}", f"--lr {settings['lr']}",
               f"--eval-every {settings['eval_every']}", f"--eval-images {settings['eval_images']}",
               f"--seed {settings['seed']}"]  # fmt: skip
    if settings.get("time_limit_s"):
        options.append(f"--minutes {settings['time_limit_s'] / 60:g}")
    if settings.get("init_from"):
        options.append(f"--init-from {settings['init_from']}")
    if settings.get("od_only_fraction"):
        options.append(f"--od-only-fraction {settings['od_only_fraction']}")
    if settings.get("loc_sigma"):
        options.append(f"--loc-sigma {settings['loc_sigma']}")
    if settings.get("multi_scale_fraction"):
        options.append(f"--multi-scale-fraction {settings['multi_scale_fraction']}")
    if settings.get("randomised_fraction"):
        options.append(f"--randomised-fraction {settings['randomised_fraction']}")
    return "    inspect-core pretrain-tiny --out models/tiny-fabric-base " + " ".join(options)


def _commands(metrics: dict) -> str:
    """The command lines that made the model, earliest first (a run may continue an earlier one, itself continued)."""
    earlier = metrics.get("continued_from")
    if not earlier:
        return _command(metrics["settings"])
    best = earlier["best"]
    return (
        f"{_commands(earlier)}\n\n(best held-out mAP@50 {best['map50']:.3f} at step {best['step']}), then continued with\n\n"
        f"{_command(metrics['settings'])}"
    )


def write_model_card(out: Path) -> None:
    """README.md beside the weights: how the model was made and what it scored."""
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    best, settings = metrics["best"], metrics["settings"]
    rows = "\n".join(f"| {name} | {v['ap50']:.3f} | {v['ap50_95']:.3f} | {v['instances']} |" for name, v in best["per_class"].items())
    parameters = sum(p.numel() for p in Florence2ForConditionalGeneration.from_pretrained(out).parameters())
    (out / "README.md").write_text(
        f"""# tiny-fabric-base

The embedded default model of inspect-core: a native `transformers` Florence-2
(`Florence2ForConditionalGeneration`, no remote code) with {parameters / 1e6:.2f}M parameters, 256 px input
(65 image tokens) and a byte-level BPE tokenizer built locally, trained from scratch on the project's
synthetic fabric. It answers `<OD>`, `<DENSE_REGION_CAPTION>` and `<CAPTION_TO_PHRASE_GROUNDING>` for the
classes hole, stain, broken_yarn, wrinkle and knot. It is a small stand-in for Florence-2-base: the demo
fine-tunes it with LoRA exactly as a plant fine-tunes the real model.

## How it was made

{_commands(metrics)}

Every step draws {settings["batch_size"]} freshly generated 256 px images (no image repeats; with
`--multi-scale-fraction`, that share is rendered at 288-512 px and resized by the processor, as camera
frames are); tasks are mixed {TASK_MIX}, after an `<OD>`-only first part where `--od-only-fraction` is given. The loss is the sequence
cross-entropy plus an auxiliary per-cell detection loss on the encoder's image tokens (training aid only,
not saved: see `inspect_core/model/cell_detection_head.py`); AdamW, warmup then constant then linear anneal.
Broken-yarn boxes carry the generator's minimum thickness (3% of the side).

## Scores

Held-out: {settings["eval_images"]} synthetic images from another seed, never trained on; greedy decoding;
confidences from token probabilities; COCO mAP from faster-coco-eval. Best checkpoint: step {best["step"]}
after {best["minutes"]} minutes on a 2-core CPU.

mAP@50 **{best["map50"]:.3f}**, mAP@50:95 {best["map50_95"]:.3f}

| class | AP@50 | AP@50:95 | instances |
|---|---|---|---|
{rows}

The full curve is in `pretrain_metrics.json`.
"""
    )
