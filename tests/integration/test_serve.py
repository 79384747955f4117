"""``ladder serve`` on the tiny model (CPU: ladder's own server), queried with the official
``openai`` client: answers equal a direct greedy generation, with and without a LoRA adapter."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

openai = pytest.importorskip("openai", reason="the openai client is in the dev extra: pip install -e '.[dev]'")

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
MAX_TOKENS = 12


def _serve_command(*args: str) -> list[str]:
    from ladder.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if "serve" in subcommands:  # `ladder serve` itself, once the CLI has the command
        return [sys.executable, "-m", "ladder.cli", "serve", *args]
    return [sys.executable, "-m", "ladder.serve", *args]


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ladder.training.models import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(tiny_model), LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                              init_lora_weights=False))
    out = tmp_path_factory.mktemp("run") / "01-sft" / "adapter"
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def server(tiny_model: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory):
    cmd = _serve_command(str(tiny_model), "--adapter", str(adapter), "--host", "127.0.0.1", "--port", "0",
                         "--max-new-tokens", "64")
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    stderr = open(log, "w")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str] = queue.Queue()
    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put("")  # end of output: the server exited

    threading.Thread(target=read, daemon=True).start()
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=180)
            except queue.Empty:
                pytest.fail(f"ladder serve printed no URL within 180 s:\n{log.read_text()}")
            if not line and proc.poll() is not None:
                pytest.fail(f"ladder serve exited with status {proc.returncode}:\n{log.read_text()}")
            if "ladder serve:" in line:
                url = line.split(" at ", 1)[1].split()[0]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr.close()


@pytest.fixture(scope="module")
def expected(tiny_model: Path, adapter: Path) -> dict:
    """Direct greedy generations with the same settings (no server)."""
    from peft import PeftModel

    from ladder.generation import GenerationSettings, generate
    from ladder.training.models import load_model, load_tokenizer

    settings = GenerationSettings(max_new_tokens=MAX_TOKENS, temperature=0.0)
    tokenizer = load_tokenizer(tiny_model)
    base = generate(load_model(tiny_model), tokenizer, [MESSAGES], settings)[0]
    tuned = PeftModel.from_pretrained(load_model(tiny_model), str(adapter))
    with_adapter = generate(tuned, tokenizer, [MESSAGES], settings)[0]
    assert with_adapter.text != base.text  # otherwise the test could not tell them apart
    return {"tiny-qwen2": base, "01-sft-adapter": with_adapter}


def test_models_are_listed(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    assert [m.id for m in client.models.list()] == ["tiny-qwen2", "01-sft-adapter"]


@pytest.mark.parametrize("model", ["tiny-qwen2", "01-sft-adapter"])
def test_greedy_answer_equals_direct_generation(server: str, expected: dict, model: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    response = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS)
    want = expected[model]
    choice = response.choices[0]
    assert choice.message.content == want.text
    assert choice.finish_reason == want.finish_reason
    assert response.usage.completion_tokens == want.num_tokens and response.usage.prompt_tokens > 0
    assert response.model == model


def test_streaming_gives_the_same_answer(server: str, expected: dict) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    stream = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=0,
                                            max_tokens=MAX_TOKENS, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected["tiny-qwen2"].text
    assert chunks[-1].choices[0].finish_reason == expected["tiny-qwen2"].finish_reason


def test_errors_are_openai_errors(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="serves tiny-qwen2, 01-sft-adapter"):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=5)
