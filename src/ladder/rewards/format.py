"""Format rewards: does the completion mark its final answer the way the prompt asked?"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ladder.rewards._common import completion_text

__all__ = ["TagFormat", "make_tag_format", "tag_format"]


class TagFormat:
    """Reward 1.0 iff a completion holds exactly one non-empty ``<tag>...</tag>`` block.

    A callable class rather than a closure so it pickles (TRL may hand rewards to a worker
    process). Build one with :func:`make_tag_format`.
    """

    def __init__(self, tag: str = "answer", *, allow_trailing_text: bool = False, name: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z][\w-]*", tag):
            raise ValueError(f"tag must be a bare tag name like 'answer', got {tag!r}")
        self.tag = tag
        self.allow_trailing_text = allow_trailing_text
        self.__name__ = name or (f"{tag}_format" if tag != "answer" else "tag_format")

    def score(self, text: str) -> float:
        """The reward for one completion's text."""
        lowered = text.lower()
        opening, closing = f"<{self.tag.lower()}>", f"</{self.tag.lower()}>"
        if lowered.count(opening) != 1 or lowered.count(closing) != 1:
            return 0.0  # missing, repeated or nested blocks
        start, end = lowered.index(opening), lowered.index(closing)
        if end < start:
            return 0.0
        if not text[start + len(opening) : end].strip():
            return 0.0
        if not self.allow_trailing_text and text[end + len(closing) :].strip():
            return 0.0
        return 1.0

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]

    def __repr__(self) -> str:
        return f"make_tag_format(tag={self.tag!r}, allow_trailing_text={self.allow_trailing_text})"


def make_tag_format(tag: str = "answer", *, allow_trailing_text: bool = False, name: str | None = None) -> TagFormat:
    """A format reward for another tag name, or one that tolerates text after the block.

    Args:
        tag: the tag name, e.g. ``"answer"`` or ``"solution"``.
        allow_trailing_text: also give 1.0 when text follows the closing tag.
        name: the reward's ``__name__`` (what TRL logs); defaults to ``"<tag>_format"``.

    Example:
        >>> lenient = make_tag_format(allow_trailing_text=True)
        >>> lenient(["<answer>4</answer> Hope that helps!"]), tag_format(["<answer>4</answer> Hope that helps!"])
        ([1.0], [0.0])
        >>> make_tag_format("solution")(["<solution>x = 1</solution>"])
        [1.0]
    """
    return TagFormat(tag, allow_trailing_text=allow_trailing_text, name=name)


_DEFAULT = TagFormat()


def tag_format(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 iff the completion holds exactly one non-empty ``<answer>...</answer>`` block and ends
    with it, else 0.0.

    Reasoning *before* the block is allowed (that is the point of thinking first); anything but
    whitespace *after* the closing tag scores 0.0, so the model learns to stop once it has
    answered, as in DeepSeek-R1's format reward (use ``make_tag_format(allow_trailing_text=True)``
    to allow it). Tags match case-insensitively. An empty or whitespace-only block, two blocks,
    nested blocks, an unclosed block or a closing tag before the opening one all score 0.0, so
    spamming tags does not pay.

    Args:
        completions: the completions, strings or conversational message lists.
        **kwargs: dataset columns and TRL's extras, ignored.

    Returns:
        One float per completion.

    Example:
        >>> tag_format([
        ...     "Let me think. 6*7=42.\\n<answer>42</answer>",
        ...     "<answer> </answer>",
        ...     "<answer>1</answer><answer>2</answer>",
        ...     [{"role": "assistant", "content": "<answer>x</answer>\\n"}],
        ... ])
        [1.0, 0.0, 0.0, 1.0]
    """
    return _DEFAULT(completions, **kwargs)
