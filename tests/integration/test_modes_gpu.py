"""The GPU-only training modes on the tiny model (`pytest -m gpu`): QLoRA trains on 4-bit weights
and merges onto the 16-bit ones; Liger's kernels train. Skipped without CUDA or the packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import SFT, Pipeline

pytestmark = pytest.mark.gpu

ROWS = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": f"{a} + {b} = {a + b}. <answer>{a + b}</answer>"}
    for a in range(4)
    for b in range(4)
]


@pytest.fixture(autouse=True)
def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def test_qlora_trains_on_4_bit_weights_and_merges_onto_16_bit_ones(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    import torch
    from safetensors.torch import load_file

    stage = SFT(dataset=ROWS, finetuning="qlora", max_steps=4, learning_rate=5e-3, save_steps=0,
                lora={"target_modules": "all-linear"})
    result = Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    out = tmp_path / "run" / "01-sft"
    metrics = json.loads((out / "metrics.json").read_text())["stage_metrics"]
    assert metrics["merge_max_abs_diff"] < 0.1 and metrics["quantization_max_abs_diff"] > 0
    merged = load_file(str(out / "model" / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in merged.values())  # 16-bit weights, no 4-bit state
    assert not any("absmax" in k or "quant" in k for k in merged)
    base = load_file(str(tiny_model / "model.safetensors"))
    assert any(not torch.equal(base[k].to(torch.bfloat16), merged[k]) for k in base if "q_proj" in k)
    assert Path(result.final.path) == out / "model"


def test_liger_kernels_train(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("liger_kernel")
    stage = SFT(dataset=ROWS, use_liger_kernel=True, max_steps=2, save_steps=0)
    Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    train = json.loads((tmp_path / "run" / "01-sft" / "metrics.json").read_text())["train"]
    assert train["steps"] == 2 and train["loss_last"] == train["loss_last"]  # finite (not NaN)
