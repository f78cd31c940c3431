"""The one config model behind every YAML recipe in ``configs/``.

Every section forbids unknown keys, so a typo (``learning_rate`` for ``lr``) is an error, not a
silently ignored setting. Errors name the file, the YAML line and the dotted key. Relative paths
are taken from the directory the command runs in (the repository root for the shipped recipes).

Defaults live here and nowhere else: every entry point (CLI, flows, app) gets its settings from
:func:`load_recipe`, which lays ``--set key.path=value`` overrides and then command-line flags over
the recipe file in one merge, so what runs is what ``inspect-core config show`` prints.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inspect_core.errors import UsageError

TaskName = Literal["od", "dense", "grounding"]
SplitName = Literal["train", "valid", "test"]


def extra_transform(name: str, params: dict[str, Any]) -> Any:
    """Instantiate an albumentations transform by class name, with a clear error for typos.

    Lives here, not in ``data.augmentation`` (which uses it), so the recipe can validate ``augment.extra``
    without the config importing the data package; albumentations is imported on first use only.
    """
    import albumentations as A

    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        raise UsageError(f"unknown albumentations transform {name!r}")
    return cls(**params)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitRatios(Section):
    """Share of source images per split, used when the source has no split folders."""

    train: float = Field(0.8, ge=0, le=1)
    valid: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must be 1.0, got {total:g}")
        return self


class DatasetSection(Section):
    source: Path = Path("sample_data/fabric_voc")
    format: Literal["auto", "jsonl", "coco", "voc", "yolo", "masks"] = "auto"
    output: Path = Path("runs/dataset")
    splits: SplitRatios = SplitRatios()
    seed: int = 0
    skip_invalid: bool = False
    mask_class: str = "defect"
    tasks: list[TaskName] = Field(default_factory=lambda: ["od", "dense", "grounding"], min_length=1)
    order: Literal["sequential", "interleaved"] = "sequential"
    workers: int = Field(0, ge=0, description="build processes; 0 = one per CPU core")
    resplit: bool = Field(False, description="split every image by dataset.splits, ignoring the source's train/valid/test folders")
    class_map: dict[int | str, str] | str | None = Field(None, description="source id/name -> class: {1: cut}, '1:cut,2:hole', a YAML file")
    data_yaml: Path | None = Field(None, description="YOLO class names file; None: data.yaml in the source, config/, ../config/, parent")

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks are repeated: {tasks}")
        return tasks


class TransformSpec(Section):
    """An extra albumentations transform: class name and constructor arguments."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _instantiable(self) -> TransformSpec:
        # Whatever a transform's constructor raises for these params is a bad recipe, and so is the warning
        # albumentations gives for an argument it does not know (a typo it would otherwise drop).
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                extra_transform(self.name, self.params)
        except (Exception, Warning) as exc:
            raise ValueError(f"transform {self.name}: {exc}") from exc
        return self


class AugmentSection(Section):
    """Flips (offline copies and/or online); the other steps run online only (inspect_core.data.augmentation)."""

    offline: bool = False
    online: bool = True
    horizontal_flip: bool = True
    vertical_flip: bool = True
    rotate90: bool = Field(False, description="online: turn by a random multiple of 90 degrees (cloth has no up; line-scan strips do)")
    color_jitter: float = Field(0.0, ge=0, le=1, description="online: brightness, contrast and saturation jitter up to this share, "
                                "hue a tenth of it (p=0.8); 0: off")  # fmt: skip
    crop: float = Field(0.0, ge=0, lt=1, description="online: random crop keeping at least 1 - crop of each side, widened to keep "
                        "every box whole (p=0.5); 0: off")  # fmt: skip
    scale: float = Field(0.0, ge=0, lt=1, description="online: zoom by a factor in [1 - scale, 1 + scale] on the same canvas; "
                         "zooming out pads with the image's mean colour (p=0.5); 0: off")  # fmt: skip
    copy_paste: float = Field(0.0, ge=0, le=1, description="online: chance that a training image gets defects cut from other "
                              "training images pasted at free places (not for grounding records); 0: off")  # fmt: skip
    copy_paste_max: int = Field(2, ge=1, description="online: most defects pasted into one image")
    extra: list[TransformSpec] = Field(default_factory=list, description="online only")
    splits: list[SplitName] = Field(default_factory=lambda: ["train"])


class ModelSection(Section):
    name: str = Field(
        "tiny",
        description="'tiny' (the shipped base), 'tiny-randomised' (its domain-randomised sibling, the few-shot real-photo start), "
        "a hub id (florence-community/Florence-2-base) or a local directory",
    )
    image_size: int | None = Field(
        None, ge=32, le=2048, multiple_of=32,
        description="processor input side in pixels for training, evaluation, scoring and export; None: the size the model was saved with",
    )  # fmt: skip
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) the base model is pinned to")


class LoraSection(Section):
    strategy: Literal["lora", "lora+vision", "freeze-vision", "full"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    rslora: bool = False
    dora: bool = False
    init: Literal["default", "gaussian", "pissa", "olora", "eva"] = "default"
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainSection(Section):
    output_dir: Path = Path("runs/train")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["constant-then-anneal", "linear", "cosine"] = "constant-then-anneal"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    anneal_fraction: float = Field(0.2, gt=0, le=1, description="constant-then-anneal: share of steps annealed")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="bf16 autocast; auto: where the chip has bf16 units")
    gradient_checkpointing: bool = False
    early_stopping_patience: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    max_minutes: float | None = Field(
        None, gt=0, description="time budget of the training loop: after a few steps the run shrinks its epochs and LR schedule "
        "to fit (anneal and later tasks included) and stops in time; None: run all epochs",
    )  # fmt: skip


class ScoreSection(Section):
    batch_size: int = Field(8, ge=1, description="images (or tiles) per generate call")
    num_workers: int = Field(1, ge=0, description="processes decoding and resizing images while the model runs")
    backend: Literal["torch", "onnx"] = "torch"
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="torch backend: auto = bf16 where the chip has bf16 units (CUDA, AMX or AVX512-BF16 CPUs), else fp32"
    )
    max_new_tokens: int = Field(256, ge=1)
    num_beams: int = Field(1, ge=1, description="1 = greedy with KV cache (fastest); more = beam search")
    decoder: Literal["lean", "generate"] = Field(
        "lean", description="greedy decoding (num_beams 1): lean = inspect_core's own loop (vision tower and encoder once, "
        "preallocated KV cache, finished rows leave the batch), the same tokens as generate in less time "
        "(benchmarks/scoring_throughput.py); generate = transformers' generate",
    )  # fmt: skip
    tta_poses: Literal[1, 2, 4, 8] = Field(
        1, description="ask the model in this many poses of every crop (flips, turns) and fuse the boxes: 1 = off; "
        "finds more defects for one decoding pass per pose (inspect_core/inference/poses.py)",
    )  # fmt: skip
    store_floor: float = Field(
        0.01, ge=0, le=1, description="lowest confidence stored (or the lowest operating threshold, if lower): "
        "reports and the app apply thresholds after the fact",
    )  # fmt: skip
    default_threshold: float | None = Field(
        None, ge=0, le=1, description="operating threshold of every class not in class_thresholds; None: the model's calibrated "
        "per-class thresholds (calibration.json), 0.3 for a model without one",
    )  # fmt: skip
    class_thresholds: dict[str, float] = Field(default_factory=dict, description="operating threshold per class (wins over the rest)")
    tile: bool = Field(False, description="score large or line-scan images as overlapping square tiles")
    tile_size: int | None = Field(None, ge=32, description="tile side in original pixels; default: the image's shorter side")
    tile_overlap: float = Field(0.2, ge=0, lt=1)
    tile_merge_overlap: float = Field(0.5, gt=0, le=1, description="same-class tile boxes sharing more of the smaller box merge")
    mask_margins: bool = Field(True, description="tiled line-scan strips: skip tiles and drop boxes in the blank margins by the cloth")

    @model_validator(mode="after")
    def _thresholds_in_range(self) -> ScoreSection:
        bad = {k: v for k, v in self.class_thresholds.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"class thresholds must be within [0, 1]: {bad}")
        return self


class CalibrationSection(Section):
    """Confidence calibration fitted at the end of training (and by ``evaluate --calibrate``), saved with the model."""

    enabled: bool = True
    split: SplitName = "valid"
    method: Literal["platt", "isotonic"] = "platt"
    min_per_class: int = Field(20, ge=1, description="detections a class needs for its own curve; fewer share the overall one")
    target_precision: float | None = Field(
        None, gt=0, le=1, description="operating threshold: the lowest reaching this precision; None: best F1"
    )
    iou: float = Field(0.5, gt=0, le=1, description="a detection is correct when it overlaps a same-class box this much")
    bins: int = Field(10, ge=2, description="confidence bins of the expected calibration error and reliability diagram")


class ShiftSpec(Section):
    name: str
    start: str = Field(description="local start time HH:MM; a shift runs until the next one starts")


class ReportSection(Section):
    timezone: str = Field("UTC", description="the plant's IANA time zone (Europe/Istanbul): days and shifts are local")
    shifts: list[ShiftSpec] = Field(default_factory=list, description="e.g. [{name: A, start: '06:00'}, {name: B, start: '14:00'}]")
    bucket: Literal["day", "shift"] = "day"


class RetrainSection(Section):
    """Nightly champion/challenger retraining (the train flow) and where reviewed batches go for it."""

    labelled_root: Path = Field(
        Path("labelled"), description="batch folders (labelled/<date>/) the app's Export and `review export` write and "
        "nightly retraining takes when they changed since the champion",
    )  # fmt: skip
    margin: float = Field(0.01, ge=0, description="mAP@50 a challenger must beat the champion by on the fixed validation set")


class StoreSection(Section):
    url: str = "sqlite:///runs/results.db"


class IngestSection(Section):
    """Getting images in: a folder the camera PC writes into, or a camera read directly (``inspect-core ingest``)."""

    folder: Path = Path("incoming")
    settle_seconds: float = Field(2.0, ge=0, description="a file is read once its size and mtime stayed the same this long")
    poll_seconds: float = Field(2.0, gt=0)
    recursive: bool = True
    archive_dir: Path | None = Field(None, description="move handled files here; None: originals are never moved")
    camera_source: str = Field("0", description="USB camera index, rtsp:// or http:// URL, or a video file")
    camera_id: str = "cam-1"
    line_id: str = "line-1"
    frames_dir: Path = Path("frames")
    every_frames: int | None = Field(None, ge=1, description="keep every N-th frame (instead of every_seconds)")
    every_seconds: float | None = Field(1.0, gt=0, description="keep one frame per this many seconds")
    image_format: Literal["png", "jpg"] = "png"
    black_below: float = Field(15.0, ge=0, le=255, description="mean grey level under which a frame is black")
    frozen_below: float = Field(0.5, ge=0, description="mean abs difference to the last kept frame under which it is frozen")
    blur_below: float = Field(50.0, ge=0, description="variance of the Laplacian under which a frame is blurred")
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(60.0, gt=0)
    max_reconnects: int | None = Field(None, ge=0, description="reconnect attempts in a row before giving up; None: never give up")

    @model_validator(mode="before")
    @classmethod
    def _one_sampling(cls, data: Any) -> Any:
        """every_frames replaces the every_seconds default; setting both is an error."""
        if isinstance(data, dict) and data.get("every_frames") is not None:
            if data.get("every_seconds") is not None:
                raise ValueError("set every_frames or every_seconds, not both")
            data = {**data, "every_seconds": None}
        return data

    @model_validator(mode="after")
    def _backoff_order(self) -> IngestSection:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_initial_seconds")
        return self


class InspectConfig(Section):
    """A full recipe: data, augmentation, model, adapter, training, scoring and results store."""

    dataset: DatasetSection = DatasetSection()
    augment: AugmentSection = AugmentSection()
    model: ModelSection = ModelSection()
    lora: LoraSection = LoraSection()
    train: TrainSection = TrainSection()
    score: ScoreSection = ScoreSection()
    calibration: CalibrationSection = CalibrationSection()
    report: ReportSection = ReportSection()
    retrain: RetrainSection = RetrainSection()
    store: StoreSection = StoreSection()
    ingest: IngestSection = IngestSection()


# The loader lives beside the model (recipe.py); imported last, as it builds on the classes above.
from inspect_core.config.recipe import ConfigError as ConfigError  # noqa: E402
from inspect_core.config.recipe import load_config as load_config  # noqa: E402
from inspect_core.config.recipe import load_recipe as load_recipe  # noqa: E402
from inspect_core.config.recipe import parse_set as parse_set  # noqa: E402
