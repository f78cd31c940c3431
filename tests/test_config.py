from pathlib import Path

import pytest

from inspect_core.config import ConfigError, InspectConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "florence2-base-3090.yaml", "florence2-large-3090.yaml"])
def test_shipped_recipes_validate(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert config.lora.strategy == "lora"  # vision tower not frozen by default
    assert config.dataset.tasks == ["od", "dense", "grounding"]


def test_demo_recipe_is_the_embedded_default() -> None:
    config = load_config(CONFIGS / "demo.yaml")
    assert config.model.name == "tiny" and config.store.url.startswith("sqlite:///")
    assert (CONFIGS.parent / config.dataset.source).is_dir()


def test_3090_recipes_use_bf16_and_checkpointing() -> None:
    for name in ("florence2-base-3090.yaml", "florence2-large-3090.yaml"):
        train = load_config(CONFIGS / name).train
        assert train.precision == "bf16" and train.gradient_checkpointing


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("dataset:\n  seed: 1\ntrain:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 5: train.learning_rate: unknown key"


def test_bad_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "dataset:\n  order: random\n  splits: {train: 0.5, valid: 0.1, test: 0.1}\n"
        "train:\n  lr: -1\naugment:\n  extra:\n    - name: NoSuchTransform\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "line 2: dataset.order: Input should be 'sequential' or 'interleaved'" in message
    assert "line 3: dataset.splits: Value error, train + valid + test must be 1.0, got 0.7" in message
    assert "line 5: train.lr: Input should be greater than 0" in message
    assert "line 8: augment.extra.0: Value error, transform NoSuchTransform" in message


def test_defaults_validate_without_a_file() -> None:
    assert InspectConfig().dataset.order == "sequential"
