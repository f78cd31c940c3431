from pathlib import Path

import huggingface_hub.constants
import pytest

from inspect_core.errors import ModelLoadError
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence, resolve_model_source


def test_offline_hub_id_says_how_to_use_a_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_florence("florence-community/Florence-2-base")
    message = str(info.value)
    assert "offline" in message and "--local-dir DIR" in message and "--model DIR" in message


def test_local_directories(random_tiny_dir: Path, tmp_path: Path) -> None:
    model, processor = load_florence(str(random_tiny_dir))
    assert type(model).__name__ == "Florence2ForConditionalGeneration" and processor.image_processor.image_seq_length == 65
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_source(str(tmp_path))


def test_tiny_is_the_shipped_model() -> None:
    if not (EMBEDDED_MODEL_DIR / "config.json").is_file():
        pytest.skip("embedded model not built in this checkout")
    assert resolve_model_source("tiny") == str(EMBEDDED_MODEL_DIR)
