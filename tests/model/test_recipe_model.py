"""model.image_size and model.revision: read by the factory, so training, evaluation, scoring and export follow the recipe."""

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from inspect_core.config import ModelSection, load_recipe
from inspect_core.errors import ModelLoadError
from inspect_core.model.factory import input_size, load_florence, load_model
from inspect_core.model.trained_model import MODEL_INFO, load_trained, saved_input_size


@contextmanager
def vision_input_sides() -> Iterator[set[int]]:
    """The side of every image batch the DaViT tower actually receives (a global forward pre-hook)."""
    seen: set[int] = set()

    def hook(module: torch.nn.Module, args: tuple) -> None:
        if type(module).__name__ == "Florence2VisionBackbone" and args and isinstance(args[0], torch.Tensor):
            seen.add(int(args[0].shape[-1]))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_image_size_sizes_the_processor_and_its_image_tokens(random_tiny_dir: Path) -> None:
    model, processor = load_model(ModelSection(name=str(random_tiny_dir), image_size=128))
    assert input_size(processor) == 128 and processor.num_image_tokens == (128 // 32) ** 2 + 1
    inputs = processor(text=["<OD>"], images=[torch.zeros(3, 300, 200, dtype=torch.uint8).numpy().transpose(1, 2, 0)], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape[-2:]) == (128, 128)
    with vision_input_sides() as sides, torch.no_grad():
        model.generate(**inputs, max_new_tokens=2)  # image features and <image> tokens agree, or generate raises
    assert sides == {128}
    _, saved_size = load_model(ModelSection(name=str(random_tiny_dir)))  # None: the size it was saved with
    assert input_size(saved_size) == 256


def test_image_size_beyond_the_position_table_is_refused(random_tiny_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="model.image_size 1632: .* at most 1600 px"):
        load_florence(str(random_tiny_dir), image_size=1632)


@pytest.mark.parametrize("size", [128, 192])
def test_changing_image_size_in_the_recipe_changes_what_training_and_scoring_feed_the_model(
    size: int, random_tiny_dir: Path, small_dataset: Path, tmp_path: Path
) -> None:
    from inspect_core.inference.scoring import score_images
    from inspect_core.store import open_store, register_model
    from inspect_core.training.trainer import train

    config = load_recipe(None, [f"model.name={random_tiny_dir}", f"model.image_size={size}", "lora.r=4", "lora.alpha=8",
                                "train.epochs=1", "train.batch_size=4", "train.max_new_tokens=4"])  # fmt: skip
    with vision_input_sides() as sides:
        train(config, small_dataset, tmp_path / "run")
    assert sides == {size}  # every training and validation batch at the recipe's size, not the model's 256
    best = tmp_path / "run" / "best"
    assert json.loads((best / MODEL_INFO).read_text())["image_size"] == size
    assert input_size(load_trained(best)[1]) == size  # the checkpoint keeps the size it was trained at
    assert saved_input_size(best) == size and saved_input_size(random_tiny_dir) == 256 and saved_input_size("org/hub-id") is None

    images = sorted((small_dataset / "test").glob("*.jpg")) + sorted((small_dataset / "test").glob("*.png"))
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    settings = config.score.model_copy(update={"max_new_tokens": 4, "num_workers": 0})
    with vision_input_sides() as sides:
        summary = score_images(images, str(random_tiny_dir), engine, settings, image_size=size)
    assert summary.scored == len(images) > 0 and sides == {size}
    # scoring's entry: not the saved 256, so a version of its own
    version = register_model(engine, random_tiny_dir, base_model=str(random_tiny_dir), variant=f"image_size={size}")
    assert version.name == summary.model_version and version.metrics["image_size"] == size  # recorded with the model version


def _fake_hub(cache: Path, repo: str, snapshots: dict[str, Path]) -> None:
    """A Hugging Face cache holding ``repo`` at several commits (what `hf download --revision` leaves behind)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for commit, folder in snapshots.items():
        shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(next(iter(snapshots)))


def test_revision_pins_the_hub_commit_and_checkpoints_record_it(random_tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    old, new = "a" * 40, "b" * 40
    changed = tmp_path / "changed"
    shutil.copytree(random_tiny_dir, changed)
    config = json.loads((changed / "config.json").read_text())
    config["vision_config"]["max_position_embeddings"] = 40  # a visibly different model at the newer commit
    (changed / "config.json").write_text(json.dumps(config))
    (changed / "model.safetensors").unlink()
    from transformers import AutoProcessor, Florence2Config, Florence2ForConditionalGeneration

    from inspect_core.model.tiny_florence import save_pretrained

    rebuilt = Florence2ForConditionalGeneration(Florence2Config.from_pretrained(changed))
    save_pretrained(rebuilt, AutoProcessor.from_pretrained(changed), changed)
    _fake_hub(tmp_path / "hub", "plant/fabric-florence", {old: random_tiny_dir, new: changed})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def positions(revision: str | None) -> int:
        loaded, _ = load_model(ModelSection(name="plant/fabric-florence", revision=revision))
        return loaded.config.vision_config.max_position_embeddings

    assert (positions(None), positions(old), positions(new)) == (50, 50, 40)
    with pytest.raises(ModelLoadError, match="model.revision 'v2' pins a hub revision, but .* is a local directory"):
        load_model(ModelSection(name=str(random_tiny_dir), revision="v2"))
