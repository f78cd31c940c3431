"""A results store filled the way a plant fills it: sample frames scored by the embedded tiny model on two lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from inspect_core.config import InspectConfig, load_recipe
from tests.flows.conftest import REPO, copy_samples

LINES = {"L1": "cam-1", "L2": "cam-2"}  # line -> its camera
PER_LINE = 4


@dataclass(frozen=True)
class ScoredStore:
    url: str
    recipe: Path  # the recipe the app is started with (the same quick score settings)
    config: InspectConfig
    frames: dict[str, list[Path]]  # line -> the registered frame files


def quick_recipe(folder: Path, url: str) -> Path:
    """The demo recipe made quick: short generations, every box the model finds kept (the tiny model is unsure), Berlin time."""
    recipe = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    recipe["score"] = {"batch_size": 4, "num_workers": 0, "max_new_tokens": 40, "default_threshold": 0.0}
    recipe["store"] = {"url": url}
    recipe["report"] = {"timezone": "Europe/Berlin", "bucket": "day"}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def scored_store(folder: Path) -> ScoredStore:
    """``PER_LINE`` sample frames per line, copied into ``folder`` and scored by the tiny model into a SQLite store there."""
    from inspect_core.pipeline import score

    url = f"sqlite:///{folder / 'results.db'}"
    recipe = quick_recipe(folder, url)
    config = load_recipe(recipe)
    frames: dict[str, list[Path]] = {}
    copies = copy_samples(folder / "frames", PER_LINE * len(LINES))
    for i, (line, camera) in enumerate(LINES.items()):
        frames[line] = copies[i * PER_LINE : (i + 1) * PER_LINE]
        score(config, frames[line], camera=camera, line=line)
    return ScoredStore(url, recipe, config, frames)
