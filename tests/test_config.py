from pathlib import Path

import pytest

from inspect_core.config import ConfigError, InspectConfig, load_config, load_recipe

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


def test_load_recipe_lays_sets_then_overrides_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lr: 0.001\n  epochs: 4\nscore:\n  batch_size: 2\n")
    config = load_recipe(
        path, ["train.lr=2e-4", "score.class_thresholds.hole=0.5", "dataset.tasks=[od, dense]", "model.revision=null", "train.epochs=6"],
        {"train.epochs": 9, "model.name": "runs/x"},
    )
    assert config.train.lr == 2e-4 and isinstance(config.train.lr, float)  # YAML scalars: 2e-4 is a float, not text
    assert config.train.epochs == 9  # flags (overrides) come last
    assert config.score.batch_size == 2 and config.score.class_thresholds == {"hole": 0.5}
    assert config.dataset.tasks == ["od", "dense"] and config.model.revision is None and config.model.name == "runs/x"
    assert load_recipe(None, ["store.url=postgresql+psycopg://u@h/db"]).store.url == "postgresql+psycopg://u@h/db"
    assert load_recipe(None) == InspectConfig()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lora.rr=4", "--set lora.rr=4: lora.rr: unknown key; did you mean lora.r?"),
        ("trian.epochs=4", "--set trian.epochs=4: trian.epochs: unknown key; did you mean train?"),
        ("train.lr=-1", "--set train.lr=-1: train.lr: Input should be greater than 0"),
        ("model.image_size=100", "--set model.image_size=100: model.image_size: Input should be a multiple of 32"),
        ("train.lr", "--set train.lr: expected key.path=value"),
        ("train.lr.x=1", "--set train.lr.x=1: train.lr.x: lr is not a section"),
    ],
)
def test_bad_set_items_name_the_key(item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(CONFIGS / "demo.yaml", [item])
    assert str(info.value).startswith(message)


def test_file_errors_keep_their_line_and_set_errors_their_item(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line 2: train.lr: Input should be greater than 0$"):
        load_recipe(path, [])
    assert load_recipe(path, ["train.lr=0.1"]).train.lr == 0.1  # a --set replaces the bad value, and its error with it
