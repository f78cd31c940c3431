from pathlib import Path

import huggingface_hub.constants
import pytest

from inspect_core.errors import ModelLoadError
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, EMBEDDED_MODELS, load_florence, resolve_model_source


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


def test_the_randomised_sibling_is_shipped_by_name_with_its_own_weights() -> None:
    """``tiny-randomised`` (the few-shot recipe's start) is its own model folder, not a second name for ``tiny``."""
    folder = EMBEDDED_MODELS["tiny-randomised"]
    if not (folder / "config.json").is_file():
        pytest.skip("embedded models not built in this checkout")
    assert resolve_model_source("tiny-randomised") == str(folder) != resolve_model_source("tiny")
    assert (folder / "model.safetensors").read_bytes() != (EMBEDDED_MODEL_DIR / "model.safetensors").read_bytes()
    model, processor = load_florence("tiny-randomised")
    assert type(model).__name__ == "Florence2ForConditionalGeneration" and processor.image_processor.image_seq_length == 65


@pytest.mark.parametrize("name", ["runs/train/nope/best", "./missing-model", "/no/such/model", "~/no-such-model", "runs/x/"])
def test_a_model_folder_that_is_not_there_is_a_usage_error_not_a_download_hint(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from inspect_core.cli import main
    from inspect_core.errors import UsageError

    with pytest.raises(UsageError, match="no such folder") as caught:
        resolve_model_source(name)
    assert "hf download" not in str(caught.value)
    assert main(["evaluate", "--model", name, "--dataset", "runs/anything"]) == 2  # exit 2: fix the command
    err = " ".join(capsys.readouterr().err.split())
    assert "no such folder" in err and "hf download" not in err


def test_a_name_shaped_like_a_hub_id_still_gets_the_download_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_source("org/not-here-locally") == "org/not-here-locally"
