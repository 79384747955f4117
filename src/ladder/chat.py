"""``ladder chat``: talk to a checkpoint in the terminal.

Each turn goes through the checkpoint's chat template with the whole conversation so far, and
the answer ends at the model's end-of-turn/EOS token, exactly as probes are generated. Commands:
``/reset`` forgets the conversation, ``/exit`` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ladder.generation import GenerationSettings, Generator
from ladder.generators import load_generator

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = [
    "EXIT",
    "PROMPT",
    "RESET",
    "add_chat_arguments",
    "chat_command",
    "chat_loop",
    "non_negative_float",
    "positive_int",
    "probability",
]

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


# ------------------------------------------------------------------------------------------------
# the command line (``ladder chat``; the argument types are shared with ``ladder serve``)


def _bounded(kind: type, test: Callable[[Any], bool], rule: str, name: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that passes ``test``, else a usage error saying ``rule``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not test(value):  # (also refuses nan: every comparison with it is false)
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = name
    return parse


#: argparse types shared by ``ladder chat`` and ``ladder serve``.
positive_int = _bounded(int, lambda v: v >= 1, "at least 1", "positive_int")
non_negative_float = _bounded(float, lambda v: v >= 0, "0 or more", "non_negative_float")
probability = _bounded(float, lambda v: 0 < v <= 1, "above 0 and at most 1", "probability")


def add_chat_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``ladder chat`` arguments."""
    parser.add_argument("checkpoint", help="a model folder (e.g. runs/x/01-sft/model) or hub id")
    parser.add_argument("--system", metavar="TEXT",
                        help="a system message that starts the conversation (and survives /reset)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=256, metavar="N",
                        help="most tokens per answer (default: 256)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0,
                        help="0 answers greedily, as the run's probes do; above 0 samples (default: 0)")
    parser.add_argument("--top-p", type=probability, default=1.0,
                        help="nucleus sampling threshold, used when --temperature is above 0 (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling (default: 0)")
    parser.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                        help="auto: vLLM when installed and a CUDA GPU is visible, else transformers")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the checkpoint's own Python code (only for checkpoints you trust)")
    return parser


def chat_command(args: argparse.Namespace) -> int:
    """The ``ladder chat`` command: a conversation on stdin/stdout until /exit or end of input."""
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed, backend=args.backend)
    chat_loop(args.checkpoint, settings=settings, options={"trust_remote_code": args.trust_remote_code},
              system=args.system)
    return 0
