"""``ladder serve`` on the tiny model (CPU: ladder's own server), run for real on a port of
127.0.0.1 and queried with the official ``openai`` client and with raw sockets.

Answers equal a direct greedy generation (with and without a LoRA adapter), streams arrive token
by token and concatenate to the whole answer, concurrent requests all complete while the server
keeps answering, the API key is enforced, and hostile requests (bad or huge Content-Length, huge
max_tokens, slow clients) get their 4xx while the server keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai", reason="the openai client is in the dev extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="ladder's server needs the serve extra: pip install -e '.[dev]'")
pytest.importorskip("starlette", reason="ladder's server needs the serve extra: pip install -e '.[dev]'")

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
MAX_TOKENS = 12
LONG = 80  # tokens for the streaming and concurrency tests: long enough to watch them arrive
KEY = "test-key-0123"
TIMEOUT = 1  # --request-timeout: short, so the slow-client tests are quick
CONTEXT = 512  # the tiny model's max_position_embeddings


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
def server(tiny_model: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of a running ``ladder serve``."""
    cmd = [sys.executable, "-m", "ladder.cli", "serve", str(tiny_model), "--adapter", str(adapter),
           "--host", "127.0.0.1", "--port", "0", "--max-new-tokens", "64", "--api-key", KEY,
           "--request-timeout", str(TIMEOUT)]
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
def port(server: str) -> int:
    return int(server.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def client(server: str) -> Any:
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def expected(tiny_model: Path, adapter: Path) -> dict:
    """Direct greedy generations with the same settings (no server)."""
    from peft import PeftModel

    from ladder.generation import GenerationSettings, generate
    from ladder.training.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    base = load_model(tiny_model)
    short, long = GenerationSettings(max_new_tokens=MAX_TOKENS), GenerationSettings(max_new_tokens=LONG)
    tuned = PeftModel.from_pretrained(load_model(tiny_model), str(adapter))
    out = {"tiny-qwen2": generate(base, tokenizer, [MESSAGES], short)[0],
           "01-sft-adapter": generate(tuned, tokenizer, [MESSAGES], short)[0],
           "long": generate(base, tokenizer, [MESSAGES], long)[0]}
    assert out["01-sft-adapter"].text != out["tiny-qwen2"].text  # otherwise the test could not tell them apart
    # The tiny model does not stop by itself: a long answer is many tokens, long enough to watch arrive.
    assert out["long"].num_tokens == LONG
    return out


def _ok(client: Any) -> None:
    """A normal request succeeds (the server is still serving)."""
    response = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=2)
    assert response.choices[0].finish_reason in ("stop", "length")


# ------------------------------------------------------------------------------------------------
# the API


def test_models_need_the_key_and_health_does_not(server: str, client: Any) -> None:
    assert [m.id for m in client.models.list()] == ["tiny-qwen2", "01-sft-adapter"]
    with urllib.request.urlopen(server.removesuffix("/v1") + "/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as caught:  # no Authorization header at all
        urllib.request.urlopen(server + "/models", timeout=10)
    assert caught.value.code == 401 and caught.value.headers["WWW-Authenticate"] == "Bearer"
    assert json.loads(caught.value.read())["error"]["code"] == "invalid_api_key"
    stranger = openai.OpenAI(base_url=server, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        stranger.models.list()
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        stranger.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=2)


@pytest.mark.parametrize("model", ["tiny-qwen2", "01-sft-adapter"])
def test_greedy_answer_equals_direct_generation(client: Any, expected: dict, model: str) -> None:
    response = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS)
    want = expected[model]
    choice = response.choices[0]
    assert choice.message.content == want.text
    assert choice.finish_reason == want.finish_reason
    assert response.usage.completion_tokens == want.num_tokens and response.usage.prompt_tokens > 0
    assert response.model == model


def test_streaming_arrives_token_by_token(client: Any, expected: dict) -> None:
    start = time.monotonic()
    stream = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=0, max_tokens=LONG,
                                            stream=True, stream_options={"include_usage": True})
    pieces: list[tuple[float, str]] = []
    last = None
    for chunk in stream:
        last = chunk
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append((time.monotonic(), chunk.choices[0].delta.content))
    done = time.monotonic()
    whole = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=0, max_tokens=LONG)
    assert "".join(text for _, text in pieces) == whole.choices[0].message.content == expected["long"].text
    assert len(pieces) >= LONG // 2  # about a piece per token (a few tokens are parts of one character)
    # Incremental: the first text arrived early, not together with the rest at the end.
    first_at = pieces[0][0]
    assert first_at - start < 0.5 * (done - start), (first_at - start, done - start)
    assert last is not None and last.usage is not None and last.usage.completion_tokens == LONG


def test_stream_and_whole_answers_agree_on_sampling_stops_and_choices(client: Any, expected: dict) -> None:
    text = expected["long"].text
    # Cut the answer in the middle, at a string the stream must hold back until it is complete.
    at = next(i for i in range(8, len(text) - 3)
              if "\ufffd" not in text[i : i + 3] and text[i : i + 3].strip() and text.find(text[i : i + 3]) == i)
    stop = text[at : at + 3]
    kwargs: dict[str, Any] = {"model": "tiny-qwen2", "messages": MESSAGES, "max_tokens": 24, "n": 2,
                              "temperature": 1.0, "seed": 3, "stop": [stop]}
    whole = client.chat.completions.create(**kwargs)
    streamed = ["", ""]
    reasons = [None, None]
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for c in chunk.choices:
            streamed[c.index] += c.delta.content or ""
            reasons[c.index] = c.finish_reason or reasons[c.index]
    assert streamed == [c.message.content for c in whole.choices]
    assert reasons == [c.finish_reason for c in whole.choices]
    assert all(stop not in s for s in streamed)
    greedy = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=24, stop=stop)
    assert greedy.choices[0].message.content == text[:at] and greedy.choices[0].finish_reason == "stop"


def test_concurrent_requests_complete_while_the_server_answers(server: str, client: Any, expected: dict) -> None:
    results: dict[str, str] = {}
    streaming = threading.Event()

    def stream() -> None:
        parts = []
        for chunk in client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=0,
                                                    max_tokens=LONG, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                streaming.set()
        results["stream"] = "".join(parts)

    def whole() -> None:
        results["whole"] = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=0,
                                                          max_tokens=LONG).choices[0].message.content

    first = threading.Thread(target=stream)
    first.start()
    assert streaming.wait(60), "the stream sent no text"
    second = threading.Thread(target=whole)  # waits for the model while the stream generates
    second.start()
    assert next(m.id for m in client.models.list()) == "tiny-qwen2"
    with urllib.request.urlopen(server.removesuffix("/v1") + "/health", timeout=10) as r:
        assert r.status == 200
    assert first.is_alive(), "/v1/models and /health were answered only after the stream ended"
    first.join(120)
    second.join(120)
    assert results == {"stream": expected["long"].text, "whole": expected["long"].text}


def test_a_client_that_leaves_stops_its_generation(client: Any) -> None:
    stream = client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=450, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    start = time.monotonic()
    _ok(client)
    # 450 tokens take several seconds on the tiny model; the next request does not wait for them.
    assert time.monotonic() - start < 2.0


def test_errors_are_openai_errors(client: Any) -> None:
    with pytest.raises(openai.NotFoundError, match="serves tiny-qwen2, 01-sft-adapter"):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens.*512") as caught:
        client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=10**12)
    assert caught.value.body["param"] == "max_tokens" and caught.value.body["code"] == "context_length_exceeded"
    # Within the context, but not with the prompt in it: the limit names what is left.
    with pytest.raises(openai.BadRequestError, match=r"max_tokens.*at most \d+"):
        client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=CONTEXT)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):  # the stream's error, before any chunk
        client.chat.completions.create(model="tiny-qwen2", messages=MESSAGES, max_tokens=CONTEXT, stream=True)
    with pytest.raises(openai.BadRequestError, match="leaves no room") as caught:
        client.chat.completions.create(model="tiny-qwen2", messages=[{"role": "user", "content": "hi " * CONTEXT}])
    assert caught.value.body["param"] == "messages"
    _ok(client)


def test_unknown_routes_and_methods(server: str) -> None:
    for url, method, status in [(server + "/completions", "POST", 404), (server + "/chat/completions", "GET", 405)]:
        request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method,
                                         headers={"Authorization": f"Bearer {KEY}"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == status and json.loads(caught.value.read())["error"]["message"]


# ------------------------------------------------------------------------------------------------
# hostile clients, over raw sockets


def _request(body: bytes = b"", *, length: str | None = None, key: str | None = KEY, extra: str = "") -> bytes:
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + extra + "\r\n").encode() + body


def _reply(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Read one response (status, JSON body, raw head) without waiting for the connection to close."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"the server closed the connection without a response: {data!r}"
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    size = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:"))
    while len(rest) < size:
        part = sock.recv(65536)
        assert part, "the server closed the connection mid-response"
        rest += part
    return int(head.split()[1]), json.loads(rest[:size]), head


def _raw(port: int, data: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return _reply(sock)


GOOD = json.dumps({"messages": MESSAGES, "max_tokens": 2}).encode()


def _chunked(body: bytes, size: int = 1 << 16) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def test_chunked_bodies_are_read_up_to_the_cap(port: int, client: Any) -> None:
    status, body, _ = _raw(port, _request(_chunked(GOOD, 16), extra="Transfer-Encoding: chunked\r\n"))
    assert status == 200 and body["object"] == "chat.completion"
    status, body, _ = _raw(port, _request(_chunked(b"x" * 9_000_000), extra="Transfer-Encoding: chunked\r\n"))
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    _ok(client)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        # the case: a negative Content-Length used to skip the body cap
        (_request(b"x" * 1024, length="-1"), 400, "malformed_request"),
        (_request(GOOD), 411, "length_required"),
        (_request(b"x" * 9_000_000, length="9000000"), 413, "request_too_large"),
        (_request(json.dumps({"messages": MESSAGES, "max_tokens": 10**12}).encode(),
                  length=str(len(json.dumps({"messages": MESSAGES, "max_tokens": 10**12})))), 400,
         "context_length_exceeded"),
        (_request(b"{not json", length="9"), 400, None),
        (_request(GOOD, length=str(len(GOOD)), key=None), 401, "invalid_api_key"),
        (_request(GOOD, length=str(len(GOOD)), key="guess"), 401, "invalid_api_key"),
    ],
    ids=["negative-length", "no-length", "huge-body", "huge-max-tokens", "bad-json", "no-key", "wrong-key"],
)
def test_hostile_requests_get_4xx_and_the_server_keeps_serving(
    port: int, client: Any, data: bytes, status: int, code: str | None
) -> None:
    got, body, head = _raw(port, data)
    assert (got, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    if status == 401:
        assert b"www-authenticate: bearer" in head.lower()
    if code == "context_length_exceeded":
        assert body["error"]["param"] == "max_tokens" and "512" in body["error"]["message"]
    _ok(client)


def _drip(port: int, head: bytes, limit: float) -> tuple[bytes, float]:
    """Send ``head``, then one more byte every 0.2 s until the server answers or hangs up: (reply, seconds)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.monotonic()
        sock.sendall(head)
        reply = b""
        while time.monotonic() - start < limit:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if not readable:
                with contextlib.suppress(OSError):
                    sock.send(b"x")
                continue
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            reply += part
        return reply, time.monotonic() - start


@pytest.mark.parametrize(
    ("head", "where"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "headers"),  # slowloris
        (_request(length="100"), "body"),
    ],
    ids=["slow-headers", "slow-body"],
)
def test_slow_clients_are_dropped_while_others_are_served(port: int, client: Any, head: bytes, where: str) -> None:
    done: dict[str, tuple[bytes, float]] = {}
    slow = threading.Thread(target=lambda: done.setdefault("slow", _drip(port, head, limit=TIMEOUT + 20)))
    slow.start()
    time.sleep(0.3)
    _ok(client)  # answered while the slow client trickles in
    slow.join(TIMEOUT + 30)
    reply, seconds = done["slow"]
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert f"{where} did not arrive within {TIMEOUT} s".encode() in reply
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 5  # dropped at the deadline, not kept open
    _ok(client)


def test_a_connection_that_sends_nothing_is_closed(port: int, client: Any) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT + 10) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed without a word: no request was started
        assert time.monotonic() - start < TIMEOUT + 5
    _ok(client)
