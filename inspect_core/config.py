"""The one config model behind every YAML recipe in ``configs/``.

Every section forbids unknown keys, so a typo (``learning_rate`` for ``lr``) is an error, not a
silently ignored setting. Errors name the file, the YAML line and the dotted key. Relative paths
are taken from the directory the command runs in (the repository root for the shipped recipes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspect_core.augmentation import extra_transform

TaskName = Literal["od", "dense", "grounding"]
SplitName = Literal["train", "valid", "test"]


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
        try:
            extra_transform(self.name, self.params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"transform {self.name}: {exc}") from exc
        return self


class AugmentSection(Section):
    offline: bool = False
    online: bool = True
    horizontal_flip: bool = True
    vertical_flip: bool = True
    extra: list[TransformSpec] = Field(default_factory=list, description="online only")
    splits: list[SplitName] = Field(default_factory=lambda: ["train"])


class ModelSection(Section):
    name: str = Field("tiny", description="'tiny', a hub id (florence-community/Florence-2-base) or a local directory")
    image_size: int = Field(768, ge=32, le=2048)
    revision: str | None = None


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


class ScoreSection(Section):
    batch_size: int = Field(8, ge=1, description="images (or tiles) per generate call")
    num_workers: int = Field(1, ge=0, description="processes decoding and resizing images while the model runs")
    backend: Literal["torch", "onnx"] = "torch"
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="torch backend: auto = bf16 where the chip has bf16 units (CUDA, AMX or AVX512-BF16 CPUs), else fp32"
    )
    max_new_tokens: int = Field(256, ge=1)
    num_beams: int = Field(1, ge=1, description="1 = greedy with KV cache (fastest); more = beam search")
    default_threshold: float = Field(0.3, ge=0, le=1, description="minimum confidence kept for classes not listed below")
    class_thresholds: dict[str, float] = Field(default_factory=dict)
    tile: bool = Field(False, description="score large or line-scan images as overlapping square tiles")
    tile_size: int | None = Field(None, ge=32, description="tile side in original pixels; default: the image's shorter side")
    tile_overlap: float = Field(0.2, ge=0, lt=1)
    tile_merge_overlap: float = Field(0.5, gt=0, le=1, description="same-class tile boxes sharing more of the smaller box merge")

    @model_validator(mode="after")
    def _thresholds_in_range(self) -> ScoreSection:
        bad = {k: v for k, v in self.class_thresholds.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"class thresholds must be within [0, 1]: {bad}")
        return self

    def threshold(self, class_name: str) -> float:
        return self.class_thresholds.get(class_name, self.default_threshold)


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
    store: StoreSection = StoreSection()
    ingest: IngestSection = IngestSection()


class ConfigError(ValueError):
    """A recipe that does not validate; the message lists every bad key with its line."""


def _key_lines(node: yaml.Node, prefix: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], int]:
    """Dotted key path -> 1-based line, from the YAML node tree."""
    lines: dict[tuple[str | int, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            lines.update(_key_lines(item, prefix + (index,)))
    return lines


def load_config(path: Path | str) -> InspectConfig:
    """Read and validate a YAML recipe."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        node = yaml.compose(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections")
    try:
        return InspectConfig.model_validate(data)
    except ValidationError as exc:
        lines = _key_lines(node) if node is not None else {}
        messages = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
            key = ".".join(str(p) for p in loc) or "(top level)"
            where = f"line {line}: " if line else ""
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            messages.append(f"{path}: {where}{key}: {reason}")
        raise ConfigError("\n".join(messages)) from None
