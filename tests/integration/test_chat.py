"""A scripted `ladder chat` session on the tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ladder.chat import PROMPT, chat_loop
from ladder.generation import GenerationSettings, generate
from ladder.training.models import load_model, load_tokenizer

SETTINGS = GenerationSettings(max_new_tokens=8)


def script(lines: list[str], prompts: list[str]) -> Callable[[str], str]:
    feed = iter(lines)

    def read(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read


def test_scripted_conversation_keeps_history_and_resets(tiny_model: Path) -> None:
    said: list[str] = []
    prompts: list[str] = []
    history = chat_loop(
        tiny_model,
        read=script(
            ["hello", "", "  and more?  ", "/help", "/reset", "again", "/exit", "never read"], prompts
        ),
        write=said.append,
        settings=SETTINGS,
    )
    model, tok = load_model(tiny_model, device="cpu"), load_tokenizer(tiny_model)
    first = generate(model, tok, ["hello"], SETTINGS)[0]
    second = generate(
        model,
        tok,
        [
            [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": first.text},
                {"role": "user", "content": "and more?"},
            ]
        ],
        SETTINGS,
    )[0]
    after_reset = generate(model, tok, ["again"], SETTINGS)[0]

    answers = [first, second, after_reset]
    assert said[0].startswith(f"Chatting with {tiny_model} (transformers).")
    expected = []
    for i, answer in enumerate(answers):
        if i == 2:
            expected += ["unknown command /help; use /reset or /exit", "(conversation cleared)"]
        expected.append(answer.text)
        if not answer.stopped:
            expected.append("(answer cut at 8 tokens)")
    assert said[1:] == expected
    # The turn after /reset was answered without the earlier turns.
    assert history == [
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": after_reset.text},
    ]
    # /exit ends the loop: the last line is never read.
    assert len(prompts) == 7 and set(prompts) == {PROMPT}


@pytest.mark.parametrize("error", [EOFError, KeyboardInterrupt])
def test_end_of_input_ends_the_chat(tiny_model: Path, error: type[BaseException]) -> None:
    def read(prompt: str) -> str:
        raise error

    said: list[str] = []
    assert chat_loop(tiny_model, read=read, write=said.append, settings=SETTINGS, system="Be brief.") == [
        {"role": "system", "content": "Be brief."}
    ]
    assert len(said) == 1


def test_system_message_survives_reset(tiny_model: Path) -> None:
    said: list[str] = []
    history = chat_loop(
        tiny_model,
        read=script(["hi", "/reset"], []),
        write=said.append,
        settings=SETTINGS,
        system="Be brief.",
    )
    assert history == [{"role": "system", "content": "Be brief."}]


def test_the_chat_command_uses_its_flags(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from ladder.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/exit\n"))
    argv = ["chat", str(tiny_model), "--system", "Be brief.", "--max-new-tokens", "6", "--temperature", "0",
            "--backend", "transformers"]
    assert main(argv) == 0
    said = capsys.readouterr().out.splitlines()
    settings = GenerationSettings(max_new_tokens=6)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    model, tok = load_model(tiny_model, device="cpu"), load_tokenizer(tiny_model)
    answer = generate(model, tok, [conversation], settings)[0]
    without_system = generate(model, tok, ["hello"], settings)[0]
    assert answer.text != without_system.text  # so the check below sees the system message
    assert said[0].startswith(f"Chatting with {tiny_model} (transformers).")
    # the prompt "you> " precedes the answer on the same line (input() writes it without a newline)
    assert said[1] == PROMPT + answer.text
    assert said[2:] == ([] if answer.stopped else ["(answer cut at 6 tokens)"]) + [PROMPT]  # then /exit
