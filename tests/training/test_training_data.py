import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from inspect_core.config import AugmentSection, DatasetSection
from inspect_core.data.augmentation import OnlineAugmenter
from inspect_core.data.dataset_builder import build_dataset
from inspect_core.data.florence_tasks import parse_target
from inspect_core.data.importers import import_dataset
from inspect_core.data.loc_tokens import decode_box
from inspect_core.training.data import FlorenceTaskDataset, TaskOrderSampler
from tests.data.test_dataset_builder import _voc_set


@pytest.fixture
def built(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    build_dataset(import_dataset(_voc_set(tmp_path / "src", 10)), out, DatasetSection(), AugmentSection())
    return out


def _bright_box(pixels: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(pixels[..., 0] > 200)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_records_come_back_unchanged_without_augmentation(built: Path) -> None:
    data = FlorenceTaskDataset(built, "train")
    lines = [json.loads(line) for line in (built / "train/annotations.jsonl").read_text().splitlines()]
    assert len(data) == len(lines)
    pixels, prefix, suffix = data[0]
    assert pixels.shape == (64, 96, 3) and (prefix, suffix) == (lines[0]["prefix"], lines[0]["suffix"])


def test_online_augmentation_keeps_targets_on_the_pixels(built: Path) -> None:
    data = FlorenceTaskDataset(built, "train", OnlineAugmenter(seed=0))
    seen = set()
    for _ in range(6):
        for index in range(len(data)):
            if data.records[index].task != "od":
                continue
            pixels, prefix, suffix = data[index]
            ((label, (bins,)),) = parse_target(suffix)
            box = decode_box(bins, pixels.shape[1], pixels.shape[0])
            assert box == pytest.approx(_bright_box(pixels), abs=96 / 1000 + 1e-6)
            seen.add(bins)
    assert len(seen) == 4  # all four flip combinations were served


def test_sampler_follows_the_task_order(built: Path) -> None:
    data = FlorenceTaskDataset(built, "train")
    sampler = TaskOrderSampler(data.records, "interleaved", epochs=2, seed=0)
    loader = DataLoader(data, sampler=sampler, batch_size=4, collate_fn=lambda batch: [p for _x, p, _s in batch])
    prefixes = [p for batch in loader for p in batch]
    assert [p.split(">")[0] for p in prefixes] == sorted(
        (p.split(">")[0] for p in prefixes), key=["<OD", "<DENSE_REGION_CAPTION", "<CAPTION_TO_PHRASE_GROUNDING"].index
    )
    sampler.set_epoch(1)
    assert len(list(iter(sampler))) == len(data)
    with pytest.raises(ValueError, match="outside the planned"):
        sampler.set_epoch(2)


def test_augmenter_follows_the_recipe() -> None:
    from inspect_core.config import TransformSpec
    from inspect_core.training.data import augmenter_from_config

    assert augmenter_from_config(AugmentSection(online=False)) is None
    augmenter = augmenter_from_config(AugmentSection(extra=[TransformSpec(name="RandomBrightnessContrast", params={"p": 0.5})]), seed=1)
    names = [type(t).__name__ for t in augmenter.pipeline.transforms]
    assert names == ["HorizontalFlip", "VerticalFlip", "RandomBrightnessContrast"]
