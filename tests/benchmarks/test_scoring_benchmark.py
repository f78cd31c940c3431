"""The scoring benchmark's GPU path: a clear refusal without CUDA, and the same code run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("scoring_throughput")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_a_usage_error(bench, capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--device", "cuda", "--out", str(tmp_path / "out.json")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "--device cuda" in message and "no CUDA device" in message
    assert not (tmp_path / "out.json").exists()


def test_unknown_section_is_a_usage_error(bench, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--sections", "tiny,warp"])
    assert exit_info.value.code == 2 and "unknown warp" in capsys.readouterr().err


def test_the_gpu_path_runs_on_the_cpu(import_benchmark) -> None:
    """``--device cuda``'s measurement, device-agnostic, on the CPU (the compiled static step: tests/inference/test_greedy.py)."""
    roofline = import_benchmark("roofline")
    report = roofline.device_throughput("cpu", archs=("tiny",), batches=(1, 2), tokens=4, size=256, compile_backend=None,
                                        dtype=torch.float32)  # fmt: skip
    assert report["device"] == "cpu"
    for batch in ("batch_1", "batch_2"):
        arm = report["tiny"][batch]
        assert arm["generate_images_per_second"] > 0 and arm["lean_images_per_second"] > 0
        assert arm["identical_tokens"] is True
