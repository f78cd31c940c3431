"""ONNX export of Florence-2: onnxruntime must decode what PyTorch decodes, step by step.

Parity runs on the shipped trained tiny model: a random tiny model greedy-decodes EOS at the first step
(its output layer is tied to the input embeddings, so it predicts its input token, the start token =
EOS), which would make a token comparison vacuous. The int8 and LoRA paths run on ``random_tiny_dir``.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from sqlmodel import Session, select
from transformers import AutoProcessor, Florence2ForConditionalGeneration
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.config import LoraSection
from inspect_core.data.synthetic_fabric import generate_sample
from inspect_core.inference.detector import detect
from inspect_core.inference.onnx_backend import OnnxFlorence
from inspect_core.inference.onnx_export import export_onnx, source_fingerprint
from inspect_core.model.factory import EMBEDDED_MODEL_DIR, load_florence
from inspect_core.model.lora import apply_strategy
from inspect_core.model.trained_model import load_trained, save_checkpoint
from inspect_core.store import ModelVersion, ReportFilter, detections_frame, open_store

runner = CliRunner()
MAX_NEW_TOKENS = 40


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped tiny model exported fp32."""
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    export_onnx(EMBEDDED_MODEL_DIR, out)
    return out


@pytest.fixture(scope="module")
def shipped(shipped_export: Path) -> tuple[Florence2ForConditionalGeneration, OnnxFlorence]:
    """The shipped tiny model in PyTorch and its fp32 export."""
    return load_florence(str(EMBEDDED_MODEL_DIR))[0].eval(), OnnxFlorence(shipped_export)


@pytest.fixture(scope="module")
def lora_int8(random_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, Path]:
    """A LoRA checkpoint with non-zero adapters, exported as int8 through the command line: (result, checkpoint, out)."""
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    model = apply_strategy(Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir), LoraSection()).eval()
    with torch.no_grad():  # trained-looking adapters: fresh ones (B = 0) would make merging a no-op
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    save_checkpoint(model, AutoProcessor.from_pretrained(random_tiny_dir), root / "ckpt", str(random_tiny_dir), "lora")
    result = runner.invoke(
        app, ["export", "onnx", "--model", str(root / "ckpt"), "--out", str(root / "int8"), "--quantize", "int8", "--json"]
    )
    return result, root / "ckpt", root / "int8"


def _inputs(runtime: OnnxFlorence, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Two different synthetic fabric images, so a row mix-up in the batch would show."""
    images = [Image.fromarray(generate_sample(10_000, index, size=256).image) for index in (0, 1)]
    return dict(runtime.processor(text=prompts, images=images, return_tensors="pt", padding=True))


def _numpy(inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    return [inputs[k].numpy() for k in ("pixel_values", "input_ids", "attention_mask")]


def test_greedy_tokens_and_log_probs_match_generate(shipped) -> None:
    model, runtime = shipped
    inputs = _inputs(runtime, ["<OD>", "<OD>"])
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1, output_scores=True, return_dict_in_generate=True
        )
    expected_logp = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True).numpy()
    tokens, log_probs = runtime.generate(*_numpy(inputs), max_new_tokens=MAX_NEW_TOKENS)
    expected = out.sequences[:, 1:].numpy()
    assert expected.shape[1] > 4 and not np.array_equal(expected[0], expected[1])  # real answers, one per image
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_allclose(log_probs, expected_logp, atol=1e-4)


def test_step_logits_with_kv_cache_match_pytorch(shipped) -> None:
    """Encoder states, first-step logits and logits after several cached steps, prompts of different lengths."""
    model, runtime = shipped
    inputs = _inputs(runtime, ["<OD>", "<CAPTION>"])
    assert inputs["attention_mask"].min() == 0  # the padding mask is exercised
    steps = torch.tensor([[2, 0, 17, 401, 1500, 86, 9], [2, 0, 300, 1200, 5, 5, 1000]])  # start token, then any ids
    with torch.no_grad():
        reference = model(**inputs, decoder_input_ids=steps)
    encoded = runtime.encode(*_numpy(inputs))
    np.testing.assert_allclose(encoded["encoder_hidden_states"].numpy(), reference.encoder_last_hidden_state.numpy(), atol=1e-4)
    past = runtime.empty_past(2)
    for step in range(steps.shape[1]):
        logits, past = runtime.decode_step(encoded, steps[:, step : step + 1].numpy(), past)
        np.testing.assert_allclose(logits, reference.logits[:, step].numpy(), atol=1e-4, err_msg=f"step {step}")
    assert past["past_key.0"].shape()[2] == steps.shape[1]


def test_detect_returns_what_the_torch_backend_returns(shipped) -> None:
    model, runtime = shipped
    images = [generate_sample(10_000, index, size=256).image for index in range(4)]
    found = runtime(images, max_new_tokens=64, num_beams=1)  # the scoring engine's Detector call
    expected = detect(model, runtime.processor, images, "<OD>", max_new_tokens=64)
    assert [[(d.label, d.box) for d in row] for row in found] == [[(d.label, d.box) for d in row] for row in expected]
    assert np.allclose([d.score for row in found for d in row], [d.score for row in expected for d in row], atol=1e-4)
    assert sum(map(len, found)) > 0
    with pytest.raises(ValueError, match="greedily"):
        runtime.detect(images, num_beams=3)


def test_cli_exports_a_lora_checkpoint_merged_as_json(lora_int8) -> None:
    result, checkpoint, out = lora_int8
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "onnx_model.json").read_text()) | {"output": str(out)}
    assert manifest["opset"] == 17 and manifest["quantization"] == "int8"
    assert manifest["source"] == {"model": str(checkpoint), "fingerprint": source_fingerprint(checkpoint)}
    for name in (*manifest["graphs"].values(), "processor_config.json", "tokenizer.json", "generation_config.json"):
        assert (out / name).is_file(), name


def test_int8_graphs_use_integer_matmuls_and_stay_close_to_the_merged_model(lora_int8, random_tiny_dir: Path) -> None:
    _result, checkpoint, out = lora_int8
    for graph in ("encoder.onnx", "decoder.onnx"):
        ops = {node.op_type for node in onnx.load(str(out / graph)).graph.node}
        assert "MatMulInteger" in ops and "ConvInteger" not in ops, graph  # convolutions stay fp32
    runtime = OnnxFlorence(out)
    inputs = _inputs(runtime, ["<OD>", "<OD>"])
    start = torch.full((2, 1), 2)
    with torch.no_grad():
        plain_logits = load_florence(str(random_tiny_dir))[0].eval()(**inputs, decoder_input_ids=start).logits[:, 0].numpy()
        lora_logits = load_trained(checkpoint)[0].eval()(**inputs, decoder_input_ids=start).logits[:, 0].numpy()
    logits, _ = runtime.decode_step(runtime.encode(*_numpy(inputs)), start.numpy(), runtime.empty_past(2))
    error = np.abs(logits - lora_logits).max()
    assert error < 0.5 * np.abs(plain_logits - lora_logits).max()  # nearer the adapted model than the base: merged
    assert np.corrcoef(logits.ravel(), lora_logits.ravel())[0, 1] > 0.99
    tokens, log_probs = runtime.generate(*_numpy(inputs), max_new_tokens=8)
    assert tokens.shape[0] == 2 and 0 < tokens.shape[1] <= 8 and (tokens < logits.shape[1]).all() and (log_probs <= 0).all()
    np.testing.assert_array_equal(tokens[:, 0], lora_logits.argmax(-1))


def test_bad_quantization_exits_2(random_tiny_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "onnx", "--model", str(random_tiny_dir), "--out", str(tmp_path / "o"), "--quantize", "int4"])
    assert result.exit_code == 2 and "unknown quantization 'int4'" in result.stderr


def test_score_command_with_the_onnx_backend_stores_what_torch_finds(shipped_export: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(4):
        Image.fromarray(generate_sample(10_000, index, size=256).image).save(frames / f"f{index}.png")
    recipe = tmp_path / "score.yaml"
    # The export is fp32: compare it with fp32 torch.
    recipe.write_text("score:\n  default_threshold: 0.05\n  num_workers: 0\n  max_new_tokens: 96\n  precision: fp32\n")
    stored = {}
    for backend, model in (("torch", str(EMBEDDED_MODEL_DIR)), ("onnx", str(shipped_export))):
        db = f"sqlite:///{tmp_path / f'{backend}.db'}"
        result = runner.invoke(
            app, ["score", "--images", str(frames), "--model", model, "--backend", backend, "--db", db, "--config", str(recipe), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["scored"] == 4
        frame = detections_frame(open_store(db), ReportFilter())
        stored[backend] = sorted(zip(frame["image_path"], frame["class_name"], frame[["x1", "y1", "x2", "y2"]].round().values.tolist()))
    assert stored["onnx"] == stored["torch"] and stored["torch"]  # the shipped model finds defects; the export finds the same
    with Session(open_store(f"sqlite:///{tmp_path / 'onnx.db'}")) as session:
        version = session.exec(select(ModelVersion)).one()
    assert version.base_model == str(EMBEDDED_MODEL_DIR)  # the registry names the model the graphs came from
    wrong = runner.invoke(app, ["score", "--images", str(frames), "--model", str(EMBEDDED_MODEL_DIR), "--backend", "onnx",
                                "--db", f"sqlite:///{tmp_path / 'x.db'}"])  # fmt: skip
    assert wrong.exit_code == 2 and "export a model first" in wrong.output
