"""ladder's chat-completions server over HTTP (with a stand-in model), and the vLLM command line."""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.errors import ConfigError, MissingDependencyError
from ladder.generation import Generation, GenerationSettings
from ladder.serve import ChatServer, default_model_name, make_server, resolve_engine, vllm_command


class _Tokenizer:
    """Enough of a tokenizer for prompt-token counting: one token per word."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
        return " ".join(m["content"] for m in messages) + " assistant:"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


class _Model:
    """The model a generator holds: records whether its adapter was switched off."""

    def __init__(self) -> None:
        self.adapter_on = True

    def disable_adapter(self):
        model = self

        class _Off:
            def __enter__(self) -> None:
                model.adapter_on = False

            def __exit__(self, *exc: object) -> None:
                model.adapter_on = True

        return _Off()


class _Generator:
    """Answers with the settings it was given (so tests see what the server asked for)."""

    backend = "transformers"

    def __init__(self) -> None:
        self.tokenizer = _Tokenizer()
        self.model = _Model()
        self.seen: list[tuple[int, GenerationSettings]] = []

    def generate(self, conversations, settings=None):
        self.seen.append((len(conversations), settings))
        who = "adapter" if self.model.adapter_on else "base"
        text = f"{who} t={settings.temperature} n={settings.max_new_tokens} STOP tail"
        return [Generation(text=text, num_tokens=7, stopped=False, finish_reason="length") for _ in conversations]

    def close(self) -> None: ...


@pytest.fixture
def served() -> Iterator[tuple[str, _Generator]]:
    generator = _Generator()
    chat = ChatServer(generator, "base-model", GenerationSettings(max_new_tokens=32), adapter_name="tuned")
    httpd = make_server(chat, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", generator
    finally:
        httpd.shutdown()
        httpd.server_close()


def _post(url: str, body: object, raw: bytes | None = None) -> tuple[int, dict | str]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if r.headers["Content-Type"] == "application/json" else text
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


MSG = [{"role": "user", "content": "hello there"}]


def test_completion_uses_request_settings_and_defaults(served) -> None:
    url, generator = served
    status, body = _post(f"{url}/v1/chat/completions", {"model": "tuned", "messages": MSG, "temperature": 0.5})
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "tuned"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "adapter t=0.5 n=32 STOP tail"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    # the base name switches the adapter off; max_tokens, n and stop strings are honoured
    status, body = _post(f"{url}/v1/chat/completions",
                         {"model": "base-model", "messages": MSG, "max_tokens": 5, "n": 2, "stop": ["STOP"]})
    assert [c["message"]["content"] for c in body["choices"]] == ["base t=0.0 n=5 "] * 2
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "stop"]
    assert generator.seen[-1][0] == 2 and generator.model.adapter_on  # switched back on after


def test_content_parts_and_streaming(served) -> None:
    url, _ = served
    messages = [{"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]}]
    status, text = _post(f"{url}/v1/chat/completions", {"messages": messages, "stream": True})
    assert status == 200
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "base t=0.0 n=32 STOP tail"  # no model: the base name
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"content": "x"}]}, 400, "messages[0]"),
        ({"messages": MSG, "temperature": 3}, 400, "temperature"),
        ({"messages": MSG, "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": MSG, "n": 9}, 400, "n"),
        ({"messages": MSG, "stop": [1]}, 400, "stop"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
        ({"model": "gpt-4", "messages": MSG}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(served, body: dict, status: int, param: str) -> None:
    url, _ = served
    got, payload = _post(f"{url}/v1/chat/completions", body)
    assert got == status and payload["error"]["param"] == param
    assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["message"]


def test_routes(served) -> None:
    url, _ = served
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as r:
        assert [m["id"] for m in json.loads(r.read())["data"]] == ["base-model", "tuned"]
    with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok"}
    assert _post(f"{url}/v1/completions", {"prompt": "x"})[0] == 404
    assert _post(f"{url}/v1/chat/completions", None, raw=b"{not json")[0] == 400


def test_model_names() -> None:
    assert default_model_name("runs/x/01-sft/model") == "01-sft"
    assert default_model_name("runs/x/01-sft/adapter") == "01-sft-adapter"
    assert default_model_name("/models/tiny-qwen2") == "tiny-qwen2"


def test_vllm_command(tmp_path: Path) -> None:
    model = tmp_path / "01-sft" / "model"
    model.mkdir(parents=True)
    (model / "chat_template.jinja").write_text("{{ x }}")
    adapter = tmp_path / "01-sft" / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24}))
    cmd = vllm_command(model, host="0.0.0.0", port=9000, adapter=adapter, trust_remote_code=True)
    assert cmd[cmd.index("serve") + 1] == str(model)
    assert cmd[cmd.index("--served-model-name") + 1] == "01-sft"
    assert cmd[cmd.index("--chat-template") + 1] == str(model / "chat_template.jinja")
    assert cmd[cmd.index("--lora-modules") + 1] == f"01-sft-adapter={adapter}"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "32"  # the next rank vLLM accepts
    assert {"--enable-lora", "--trust-remote-code"} <= set(cmd)
    assert (cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]) == ("0.0.0.0", "9000")
    overrides = json.loads(cmd[cmd.index("--override-generation-config") + 1])
    assert overrides["repetition_penalty"] == 1.0 and overrides["top_k"] == 0  # the probes' decoding


def test_engine_choice() -> None:
    with pytest.raises(ConfigError, match="--engine"):
        resolve_engine("transformers")
    assert resolve_engine("ladder") == "ladder"
    if importlib.util.find_spec("vllm") is None:
        assert resolve_engine("auto") == "ladder"
        with pytest.raises(MissingDependencyError, match=r"ladder\[vllm\]"):
            resolve_engine("vllm")
