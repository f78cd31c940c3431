"""The one config model behind every YAML recipe in ``configs/``.

Every section forbids unknown keys, so a typo (``learning_rate`` for ``lr``) is an error, not a
silently ignored setting. Errors name the file, the YAML line and the dotted key. Relative paths
are taken from the directory the command runs in (the repository root for the shipped recipes).

Defaults live here and nowhere else: every entry point (CLI, flows, app) gets its settings from
:func:`load_recipe`, which lays ``--set key.path=value`` overrides and then command-line flags over
the recipe file in one merge, so what runs is what ``inspect-core config show`` prints.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspect_core.config.safe_yaml import KeyLines, read_yaml_file, safe_yaml_load
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
    offline: bool = False
    online: bool = True
    horizontal_flip: bool = True
    vertical_flip: bool = True
    extra: list[TransformSpec] = Field(default_factory=list, description="online only")
    splits: list[SplitName] = Field(default_factory=lambda: ["train"])


class ModelSection(Section):
    name: str = Field("tiny", description="'tiny', a hub id (florence-community/Florence-2-base) or a local directory")
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


class ConfigError(UsageError):
    """A recipe that does not validate; the message lists every bad key with its line."""


def _read(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """The recipe's mapping and the line of every key in it, through the one safe YAML reader."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a recipe file")
    data, lines = read_yaml_file(path, error=ConfigError)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    return data, lines


def _origin(loc: tuple[Any, ...], where: dict[tuple[Any, ...], str]) -> str:
    """Where the value at ``loc`` came from: the closest enclosing key given, else a key given below it (a section-level
    check failing on a ``--set`` item), else the file. Keys compare as text: YAML's ``1:`` is the int 1 to pydantic."""
    given = {tuple(str(p) for p in key): origin for key, origin in where.items()}
    path = tuple(str(p) for p in loc)
    for n in range(len(path), 0, -1):
        if path[:n] in given:
            return given[path[:n]]
    below = [origin for key, origin in given.items() if len(key) > len(path) and key[: len(path)] == path]
    return below[-1] if below else given.get((), "")


def _shown(text: str) -> str:
    """``text`` for a message: as it is, or quoted with escapes if it holds characters a terminal would swallow (\\r, \\x1b)."""
    return text if text.isprintable() else repr(text)


def _validate(data: dict[str, Any], where: dict[tuple[str | int, ...], str]) -> InspectConfig:
    """Validate the merged mapping; each error names where its key came from (file and line, --set, or a flag)."""
    try:
        return InspectConfig.model_validate(data)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            origin = _origin(loc, where)
            key = ".".join(str(p) for p in loc) or "(top level)"
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            messages.append(f"{origin}{key}: {reason}")
        raise ConfigError("\n".join(messages)) from None


def load_config(path: Path | str) -> InspectConfig:
    """Read and validate a YAML recipe."""
    return load_recipe(path)


def _field_keys(model: type[BaseModel], dotted: str) -> tuple[list[str], bool]:
    """The settable keys below ``dotted`` (``lora``, ``score.class_thresholds``) and whether any key is allowed there."""
    current: Any = model
    for part in [p for p in dotted.split(".") if p]:
        field = current.model_fields[part] if isinstance(current, type) and issubclass(current, BaseModel) else None
        current = _section_type(field.annotation) if field else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields), False
    return [], True  # a free mapping (class_thresholds), a list or a scalar: not ours to check further


def _section_type(annotation: Any) -> Any:
    """The Section class inside ``X``, ``X | None``; anything else as it is."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return annotation


def _check_key(key: str, origin: str) -> list[str]:
    """``key`` split into parts, or a ConfigError naming it and the closest real key ("did you mean")."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{origin}{key!r}: not a dotted key such as train.lr")
    for depth, part in enumerate(parts):
        known, free = _field_keys(InspectConfig, ".".join(parts[:depth]))
        if free:
            break
        if part not in known:
            prefix = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean {'.'.join(filter(None, [prefix, close[0]]))}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"{origin}{_shown(key)}: unknown key{hint}")
    return parts


def _put(data: dict[str, Any], parts: list[str], value: Any, key: str, origin: str) -> None:
    for part in parts[:-1]:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}{_shown(key)}: {_shown(part)} is not a section")
        data = child
    data[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value`` -> (key, value), the value read as a YAML scalar or flow collection (8 -> int, null -> None, [a, b])."""
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"--set {_shown(item)}: expected key.path=value, e.g. --set train.lr=2e-4")
    return key.strip(), safe_yaml_load(text, f"--set {_shown(item)}", error=ConfigError) if text.strip() else ""


def load_recipe(path: Path | str | None = None, sets: Sequence[str] = (), overrides: Mapping[str, Any] | None = None) -> InspectConfig:
    """The one merge behind every entry point: recipe file (or the defaults), then ``--set key.path=value``
    items, then ``overrides`` (dotted keys from command-line flags or flow parameters), validated once.

    Unknown keys fail with the closest known one; bad values name the file and line, the ``--set``
    item, or the flag they came from.
    """
    data: dict[str, Any] = {}
    where: dict[tuple[str | int, ...], str] = {}
    if path is not None:
        data, lines = _read(Path(path))
        where = {loc: f"{path}: line {line}: " for loc, line in lines.items()} | {(): f"{path}: "}
    layers = [(f"--set {_shown(item)}: ", *parse_set(item)) for item in sets]
    layers += [("override: ", key, value) for key, value in (overrides or {}).items()]
    for origin, key, value in layers:
        parts = _check_key(key, origin)
        _put(data, parts, value, key, origin)
        where = {loc: w for loc, w in where.items() if loc[: len(parts)] != tuple(parts)} | {tuple(parts): origin}
    return _validate(data, where)
