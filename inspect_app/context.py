"""What every page shares: the store, the recipe, the models on offer (loaded once each) and the images one may pick.

Everything a browser names is a key the app made (a model label, ``store:<image id>``, ``sample:<file name>``)
and looks up here; a key that is not on the list is refused. So no text from a request ever becomes a file
path: a store image's file comes from the store (``inspect_core.store.browse.image_file``), a sample's from
the fixed sample folder listed at start.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from inspect_core.config import InspectConfig
from inspect_core.errors import UsageError
from inspect_core.store import champion
from inspect_core.store.browse import image_file, model_versions, recent_images

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data" / "fabric_voc"
CHAMPION = "champion"
PICKABLE_STORE_IMAGES = 50  # the newest registered frames offered on the Try page


@dataclass
class AppContext:
    """The app's state: one store engine, the recipe, the ``--model`` given, and the loaded predictors."""

    engine: Engine
    config: InspectConfig
    model: str | None = None  # --model: a folder, ``tiny``, or None (champion, else the recipe's model)
    samples: Path | None = SAMPLES
    labelled_root: Path | None = None  # where the Export page writes batches; None: the recipe's retrain.labelled_root
    _predictors: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.labelled_root is None:  # one truth: nightly retraining reads the same recipe field
            self.labelled_root = Path(self.config.retrain.labelled_root)

    # -- models --------------------------------------------------------------------------------------------
    def model_choices(self) -> dict[str, str]:
        """Picker label -> model folder: the ``--model`` given, the champion, every registered version, the recipe's model.

        The first entry is the default. Read from the registry each time, so a model promoted while the app
        runs is offered without a restart.
        """
        choices: dict[str, str] = {}
        best = champion(self.engine)
        if self.model is not None and self.model != CHAMPION:
            choices[f"--model {self.model}"] = self.model
        if best is not None:
            choices[f"{CHAMPION} ({best.name})"] = best.path
        for version in model_versions(self.engine):
            choices.setdefault(version.name, version.path)
        choices.setdefault(f"recipe model ({self.config.model.name})", self.config.model.name)
        return choices

    def model_path(self, label: str) -> str:
        choices = self.model_choices()
        if label not in choices:
            raise UsageError(f"model {label!r} is not one the app offers: pick one of {', '.join(choices)}")
        return choices[label]

    def predictor(self, label: str):
        """The predictor of the model behind ``label``, loaded on first use and kept (a model loads in seconds, a frame in less)."""
        from inspect_core.inference.predict import load_predictor

        path = self.model_path(label)
        with self._lock:  # two first requests for one model load it once
            if path not in self._predictors:
                self._predictors[path] = load_predictor(path, self.config.score.precision, self.config.model.image_size, self.config.score)
            return self._predictors[path]

    # -- images --------------------------------------------------------------------------------------------
    def image_choices(self) -> dict[str, str]:
        """Key -> label of the images one may pick: the store's newest frames, then the sample set."""
        choices: dict[str, str] = {}
        for row in recent_images(self.engine, PICKABLE_STORE_IMAGES).itertuples():
            where = " ".join(str(v) for v in (row.line, row.camera) if v is not None)
            choices[f"store:{row.image_id}"] = f"{Path(row.image_path).name} ({where or 'no line'}, {row.captured_at:%Y-%m-%d %H:%M} UTC)"
        for path in self._sample_files():
            choices[f"sample:{path.name}"] = f"sample {path.name}"
        return choices

    def _sample_files(self) -> list[Path]:
        from inspect_core.data.importers.image_files import list_images

        return list_images(self.samples) if self.samples is not None and self.samples.is_dir() else []

    def image_source(self, key: str) -> tuple[Path, str]:
        """The file behind a picker key, and the name to show for it; a key the app did not offer is refused."""
        kind, _, value = key.partition(":")
        if kind == "store" and value.isdigit():
            path = image_file(self.engine, int(value))
            if path is not None:
                return Path(path), Path(path).name
        elif kind == "sample":
            for path in self._sample_files():
                if path.name == value:
                    return path, path.name
        raise UsageError(f"image {key!r} is not one the app offers (pick a store frame or a sample)")

    def load(self, key: str) -> tuple[np.ndarray, str]:
        """RGB pixels of a picked image, checked as scoring checks files (:func:`inspect_core.inference.predict.load_image`)."""
        from inspect_core.inference.predict import load_image

        path, name = self.image_source(key)
        return load_image(path, name), name
