"""``ladder chat``: talk to a checkpoint in the terminal.

Each turn goes through the checkpoint's chat template with the whole conversation so far, and
the answer ends at the model's end-of-turn/EOS token, exactly as probes are generated. Commands:
``/reset`` forgets the conversation, ``/exit`` (or end of input) leaves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ladder.generation import GenerationSettings, Generator
from ladder.generators import load_generator

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["EXIT", "PROMPT", "RESET", "chat_loop"]

PROMPT = "you> "
RESET = "/reset"
EXIT = "/exit"


def _write_line(text: str) -> None:
    # The chat's own output channel (the library otherwise never writes to stdout).
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def chat_loop(
    checkpoint_path: Checkpoint | str | os.PathLike[str],
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = _write_line,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
    system: str | None = None,
    generator: Generator | None = None,
) -> list[dict[str, str]]:
    """Chat with a checkpoint until ``/exit`` or end of input.

    Args:
        checkpoint_path: the checkpoint, a model directory or a hub id.
        read: returns the next user line; called with the prompt string (like ``input``).
            ``EOFError`` or ``KeyboardInterrupt`` ends the chat.
        write: shows one message (the model's answer, or a notice).
        settings: generation settings (backend, ``max_new_tokens``, temperature).
        options: run options for loading the model.
        system: an optional system message that starts (and survives ``/reset`` of) every
            conversation.
        generator: an already loaded generator to use instead of loading ``checkpoint_path``.

    Returns:
        The conversation as it stood at the end (since the last ``/reset``).
    """
    settings = settings or GenerationSettings()
    own = generator is None
    gen = generator or load_generator(checkpoint_path, options, settings)
    start: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    history = list(start)
    name = getattr(checkpoint_path, "path", checkpoint_path)
    write(f"Chatting with {name} ({gen.backend}). {RESET} starts over, {EXIT} quits.")
    try:
        while True:
            try:
                line = read(PROMPT)
            except (EOFError, KeyboardInterrupt):
                break
            text = line.strip()
            if not text:
                continue
            if text == EXIT:
                break
            if text == RESET:
                history = list(start)
                write("(conversation cleared)")
                continue
            if text.startswith("/") and " " not in text:
                write(f"unknown command {text}; use {RESET} or {EXIT}")
                continue
            history.append({"role": "user", "content": text})
            answer = gen.generate([history], settings)[0]
            history.append({"role": "assistant", "content": answer.text})
            write(answer.text)
            if not answer.stopped:
                write(f"(answer cut at {settings.max_new_tokens} tokens)")
    finally:
        if own:
            gen.close()
    return history
