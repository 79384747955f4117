"""An example ladder reward plugin: ``brevity`` rewards answers within a word budget.

A ladder reward is a plain function with TRL's reward signature: it takes the batch's
``completions`` (strings, or lists of chat messages for conversational datasets) plus every
dataset column as a keyword argument, and returns one float (or ``None`` to abstain) per
completion. Nothing here imports ladder; the entry point in ``pyproject.toml`` is all it takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["Brevity", "brevity", "make_brevity"]
__version__ = "0.1.0"


def _text(completion: Any) -> str:
    """The assistant text of a completion in either of TRL's shapes."""
    if isinstance(completion, str):
        return completion
    return "\n".join(str(m.get("content") or "") for m in completion if m.get("role", "assistant") == "assistant")


class Brevity:
    """1.0 up to ``max_words`` words, falling linearly to 0.0 at twice that.

    A class rather than a closure, so configured instances pickle (TRL may send reward
    functions to a worker process) and carry the ``__name__`` TRL logs them under.
    """

    def __init__(self, max_words: int = 50, name: str = "brevity") -> None:
        if max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {max_words}")
        self.max_words = max_words
        self.__name__ = name

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        rewards = []
        for completion in completions:
            words = len(_text(completion).split())
            over = max(0, words - self.max_words)
            rewards.append(max(0.0, 1.0 - over / self.max_words))
        return rewards


def make_brevity(max_words: int = 50, name: str = "brevity") -> Brevity:
    """A ``brevity`` reward with another budget.

    Example:
        >>> make_brevity(max_words=2)(["one two", "one two three", "a b c d e"])
        [1.0, 0.5, 0.0]
    """
    return Brevity(max_words, name)


_DEFAULT = Brevity()


def brevity(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for completions of at most 50 words, falling linearly to 0.0 at 100 words.

    Pair it with a correctness reward (``exact_match``) and a small weight, so the model
    learns to answer correctly *and* concisely rather than merely briefly.

    Example:
        >>> brevity(["The answer is 4.", [{"role": "assistant", "content": "word " * 75}]])
        [1.0, 0.5]
    """
    return _DEFAULT(completions, **kwargs)
