"""``ladder serve`` without a server: request checks, stop strings, the streamer's text, names,
the vLLM command line, bind-address warnings, the API key's source, and the CLI's flags."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ladder.errors import ConfigError, MissingDependencyError
from ladder.generation import GenerationSettings
from ladder.serve import (
    RequestError,
    bind_warning,
    context_length,
    default_model_name,
    is_loopback,
    parse_chat_request,
    resolve_api_key,
    resolve_engine,
    vllm_command,
    vllm_environment,
)
from ladder.serve.schema import find_stop, holdback

MSG = [{"role": "user", "content": "hello there"}]
DEFAULTS = GenerationSettings(max_new_tokens=32, backend="transformers")


def parse(body: Any, context: int = 512) -> Any:
    return parse_chat_request(body, names=["base-model", "tuned"], defaults=DEFAULTS, context_length=context)


# ------------------------------------------------------------------------------------------------
# requests


def test_request_defaults_and_overrides() -> None:
    request = parse({"messages": MSG})
    assert (request.model, request.n, request.stops, request.stream, request.max_tokens_set) == (
        "base-model", 1, (), False, False)
    assert request.settings == DEFAULTS
    request = parse({"model": "tuned", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]}],
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 4, "n": 3, "stop": "STOP", "stream": True,
        "stream_options": {"include_usage": True}})
    assert request.model == "tuned" and request.messages == MSG
    assert (request.settings.temperature, request.settings.top_p, request.settings.max_new_tokens,
            request.settings.seed) == (0.5, 0.9, 7, 4)
    assert (request.n, request.stops, request.stream, request.include_usage, request.max_tokens_set) == (
        3, ("STOP",), True, True, True)
    # every choice is one row of a single batch
    assert parse({"messages": MSG, "n": 8}).settings.batch_size == 8
    assert parse({"messages": MSG, "max_completion_tokens": 9}).settings.max_new_tokens == 9


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ([1, 2], 400, None),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"content": "x"}]}, 400, "messages[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
        ({"messages": MSG, "temperature": 3}, 400, "temperature"),
        ({"messages": MSG, "temperature": "hot"}, 400, "temperature"),
        ({"messages": MSG, "top_p": 0}, 400, "top_p"),
        ({"messages": MSG, "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": MSG, "max_tokens": 2.5}, 400, "max_tokens"),
        ({"messages": MSG, "max_tokens": True}, 400, "max_tokens"),
        ({"messages": MSG, "max_tokens": 10**12}, 400, "max_tokens"),
        ({"messages": MSG, "max_tokens": 10**400}, 400, "max_tokens"),  # float() of it would overflow
        ({"messages": MSG, "max_completion_tokens": 513}, 400, "max_completion_tokens"),
        ({"messages": MSG, "seed": -1}, 400, "seed"),
        ({"messages": MSG, "seed": 2**64}, 400, "seed"),
        ({"messages": MSG, "n": 9}, 400, "n"),
        ({"messages": MSG, "stop": [1]}, 400, "stop"),
        ({"messages": MSG, "stop": {"a": 1}}, 400, "stop"),
        ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"messages": MSG, "stream": "yes"}, 400, "stream"),
        ({"messages": MSG, "stream_options": [1]}, 400, "stream_options"),
        ({"model": "gpt-4", "messages": MSG}, 404, "model"),
    ],
)
def test_bad_requests_name_the_field(body: Any, status: int, param: str | None) -> None:
    with pytest.raises(RequestError) as caught:
        parse(body)
    error = caught.value
    assert (error.status, error.param) == (status, param)
    payload = error.body()["error"]
    assert payload["message"] and payload["param"] == param and payload["type"] == "invalid_request_error"


def test_max_tokens_over_the_context_names_the_limit() -> None:
    with pytest.raises(RequestError, match=r"`max_tokens` is 1000000000000, more than this model's context of 512"):
        parse({"messages": MSG, "max_tokens": 10**12})
    assert parse({"messages": MSG, "max_tokens": 512}).settings.max_new_tokens == 512  # the prompt is checked later


def test_error_bodies_are_openai_shaped() -> None:
    assert RequestError("no key", status=401, code="invalid_api_key").body() == {
        "error": {"message": "no key", "type": "authentication_error", "param": None, "code": "invalid_api_key"}}
    assert RequestError("boom", status=500).body()["error"]["type"] == "server_error"
    assert isinstance(RequestError("x"), ValueError)


def test_stop_strings_cut_where_the_first_one_completes() -> None:
    assert find_stop("one two three", ["two", "three"]) == 4
    assert find_stop("one two three", ["nope"]) is None
    # "abcd" starts earlier, but "c" is complete first: a stream would have stopped there
    assert find_stop("xxabcd", ["abcd", "c"]) == 4
    assert find_stop("ab ab", ["ab"], start=1) == 3
    assert holdback("hello wor", ["world"]) == 3
    assert holdback("hello", ["world"]) == 0
    assert holdback("aa", ["aab", "ab"]) == 2
    assert holdback("anything", []) == 0


# ------------------------------------------------------------------------------------------------
# the streamer: deltas concatenate to the whole answer, and nothing is sent twice or changed


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from ladder.training.models import load_tokenizer

    return load_tokenizer(tiny_model)


def _stream(tokenizer: Any, rows: list[list[int]], **kwargs: Any) -> tuple[Any, list[list[str]]]:
    """Feed ``rows`` (one token per row per step, as transformers does) to a ChoiceStreamer."""
    import torch

    from ladder.serve.streaming import ChoiceStreamer, StopStreaming

    deltas: list[list[str]] = [[] for _ in rows]
    streamer = ChoiceStreamer(tokenizer, len(rows), on_text=lambda i, text: deltas[i].append(text), **kwargs)
    streamer.put(torch.zeros((len(rows), 3), dtype=torch.long))  # the prompt: ignored
    width = max(len(r) for r in rows)
    try:
        for step in range(width):
            streamer.put(torch.tensor([r[step] if step < len(r) else 0 for r in rows]))
    except StopStreaming:
        pass
    streamer.end()
    streamer.finish()
    return streamer, deltas


TEXT = "Zoë paid 3€ — naïve café 🍎, then stop here."


def test_deltas_concatenate_to_the_decoded_answer(tokenizer: Any) -> None:
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(TEXT) // 2  # byte-level tokens: multi-byte characters span several
    streamer, deltas = _stream(tokenizer, [ids], stop_ids=[])
    assert "".join(deltas[0]) == tokenizer.decode(ids, skip_special_tokens=True) == streamer.choices[0].text
    assert all("\ufffd" not in d for d in deltas[0])  # a character is sent whole, never as U+FFFD first
    assert len(deltas[0]) > 10  # text as it comes, not one block
    assert streamer.choices[0].finish_reason == "length" and len(streamer.choices[0].tokens) == len(ids)


def test_stop_tokens_and_stop_strings_end_rows(tokenizer: Any) -> None:
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    streamer, deltas = _stream(tokenizer, [ids[:5] + [end] + ids[5:], ids], stop_ids=[end], stops=["stop here"])
    first, second = streamer.choices
    assert (first.finish_reason, "".join(deltas[0])) == ("stop", tokenizer.decode(ids[:5]))
    assert len(first.tokens) == 5  # the stop token and the padding after it are not the answer's
    assert (second.finish_reason, "".join(deltas[1])) == ("stop", TEXT[: TEXT.index("stop here")])
    assert not any("stop" in d for d in deltas[1])  # held back while it could still be the stop string


def test_a_row_that_completes_every_choice_stops_generation(tokenizer: Any) -> None:
    import torch

    from ladder.serve.streaming import ChoiceStreamer, StopStreaming

    ids = tokenizer("ab cd", add_special_tokens=False)["input_ids"]
    streamer = ChoiceStreamer(tokenizer, 1, stop_ids=[], stops=["b"], on_text=lambda i, t: None)
    streamer.put(torch.zeros((1, 2), dtype=torch.long))
    with pytest.raises(StopStreaming, match="complete"):
        for token in ids:
            streamer.put(torch.tensor([token]))
    cancelled = threading.Event()
    streamer = ChoiceStreamer(tokenizer, 1, stop_ids=[], on_text=lambda i, t: None, cancelled=cancelled)
    streamer.put(torch.zeros((1, 2), dtype=torch.long))
    streamer.put(torch.tensor([ids[0]]))
    cancelled.set()
    with pytest.raises(StopStreaming, match="went away"):
        streamer.put(torch.tensor([ids[1]]))


def test_context_length_comes_from_the_config_or_the_tokenizer() -> None:
    config = argparse.Namespace(max_position_embeddings=4096)
    assert context_length(argparse.Namespace(config=config), None) == 4096
    assert context_length(argparse.Namespace(config=argparse.Namespace(n_positions=1024)), None) == 1024
    assert context_length(None, argparse.Namespace(model_max_length=2048)) == 2048
    assert context_length(None, argparse.Namespace(model_max_length=10**30)) is None  # transformers' "unknown"


# ------------------------------------------------------------------------------------------------
# engines, names, addresses, keys


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
    cmd = vllm_command(model, host="0.0.0.0", port=9000, adapter=adapter, trust_remote_code=True, max_model_len=2048)
    # `vllm serve MODEL`, or with vLLM's CPU build its API server module with `--model MODEL`
    assert cmd[cmd.index("--model" if "--model" in cmd else "serve") + 1] == str(model)
    assert cmd[cmd.index("--served-model-name") + 1] == "01-sft"
    assert cmd[cmd.index("--chat-template") + 1] == str(model / "chat_template.jinja")
    assert cmd[cmd.index("--lora-modules") + 1] == f"01-sft-adapter={adapter}"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "32"  # the next rank vLLM accepts
    assert cmd[cmd.index("--max-model-len") + 1] == "2048"
    assert {"--enable-lora", "--trust-remote-code"} <= set(cmd)
    assert (cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]) == ("0.0.0.0", "9000")
    overrides = json.loads(cmd[cmd.index("--override-generation-config") + 1])
    assert overrides["repetition_penalty"] == 1.0 and overrides["top_k"] == 0  # the probes' decoding


def test_vllm_generation_config_lists_the_end_of_turn_token(tiny_model: Path, tmp_path: Path) -> None:
    """vLLM stops only at generation_config's eos ids and the tokenizer's EOS: the tiny base's file
    names <|endoftext|> alone, while its chat template ends turns with <|im_end|>."""
    from ladder.serve.engines import write_vllm_generation_config
    from ladder.training.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    original = json.loads((tiny_model / "generation_config.json").read_text())
    assert original["eos_token_id"] == tok.eos_token_id
    folder = write_vllm_generation_config(tiny_model, tmp_path / "gen")
    assert folder == tmp_path / "gen"
    written = json.loads((folder / "generation_config.json").read_text())
    assert written["eos_token_id"] == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    assert {k: v for k, v in written.items() if k != "eos_token_id"} == \
        {k: v for k, v in original.items() if k != "eos_token_id"}
    cmd = vllm_command(tiny_model, generation_config=folder)
    assert cmd[cmd.index("--generation-config") + 1] == str(folder)
    assert write_vllm_generation_config("Qwen/Qwen2.5-0.5B", tmp_path / "hub") is None  # vLLM reads the hub's
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "generation_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken/generation_config.json: not valid JSON"):
        write_vllm_generation_config(tmp_path / "broken", tmp_path / "out")


def test_vllm_gets_the_api_key_in_its_environment_not_its_command_line() -> None:
    env = vllm_environment("s3cret", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "VLLM_API_KEY": "s3cret"}
    assert "VLLM_API_KEY" not in vllm_environment(None, {"PATH": "/bin"})
    assert not any("s3cret" in part for part in vllm_command("m", host="0.0.0.0"))


def test_engine_choice() -> None:
    with pytest.raises(ConfigError, match="--engine"):
        resolve_engine("transformers")
    assert resolve_engine("ladder") == "ladder"
    if importlib.util.find_spec("vllm") is None:
        assert resolve_engine("auto") == "ladder"
        with pytest.raises(MissingDependencyError, match=r"ladder\[vllm\]"):
            resolve_engine("vllm")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("myhost.example", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_warnings() -> None:
    assert bind_warning("127.0.0.1", None) is None
    assert "no API key" in (bind_warning("0.0.0.0", None) or "")
    assert "plain HTTP" in (bind_warning("0.0.0.0", "k") or "")


def test_api_key_from_flag_or_environment() -> None:
    assert resolve_api_key("flag", {"LADDER_API_KEY": "env"}) == "flag"
    assert resolve_api_key(None, {"LADDER_API_KEY": "env"}) == "env"
    assert resolve_api_key(None, {}) is None
    assert resolve_api_key("", {"LADDER_API_KEY": "env"}) is None  # an empty key is no key, not a key ""


# ------------------------------------------------------------------------------------------------
# the command line


def _subcommand(name: str) -> argparse.ArgumentParser:
    from ladder.cli import build_parser

    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[name]


@pytest.mark.parametrize("name", ["chat", "serve"])
def test_every_flag_has_help(name: str) -> None:
    missing = [a.dest for a in _subcommand(name)._actions if not a.help]
    assert not missing


def test_chat_and_serve_flags() -> None:
    args = _subcommand("chat").parse_args(["m", "--system", "Be brief.", "--max-new-tokens", "9",
                                           "--temperature", "0.7", "--top-p", "0.9", "--seed", "3"])
    assert (args.system, args.max_new_tokens, args.temperature, args.top_p, args.seed) == ("Be brief.", 9, 0.7, 0.9, 3)
    args = _subcommand("serve").parse_args(["m", "--api-key", "k", "--max-model-len", "1024", "--request-timeout", "5"])
    assert (args.api_key, args.max_model_len, args.request_timeout) == ("k", 1024, 5.0)
    for bad in (["m", "--max-new-tokens", "0"], ["m", "--temperature", "-1"], ["m", "--top-p", "1.5"]):
        with pytest.raises(SystemExit):
            _subcommand("chat").parse_args(bad)


def test_help_imports_neither_torch_nor_the_server_packages() -> None:
    code = (
        "import sys, contextlib, io, ladder.cli\n"
        "for argv in (['--help'], ['serve', '--help'], ['chat', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        ladder.cli.main(argv)\n"
        "heavy = [m for m in ('torch', 'transformers', 'starlette', 'uvicorn', 'anyio') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
