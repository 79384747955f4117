"""Text as it is generated: a transformers streamer that turns each step's tokens into text deltas.

:class:`ChoiceStreamer` is handed to :func:`ladder.generation.generate` (so a streamed answer is
decoded exactly as a whole one: same prompt, stop tokens and sampling). transformers calls
``put()`` with the prompt ids, then once per decoding step with one new token per row; each row
is one choice (``n``) of a request.

Text is released incrementally but never changed afterwards, so the deltas concatenate to the
whole answer:

* Detokenizing a window of the last tokens (the ``prefix_offset``/``read_offset`` scheme of
  text-generation-inference and vLLM) keeps each step cheap, and a token that ends inside a
  multi-byte character (the text ends in U+FFFD) is held until the character is complete.
* Text that could be the start of a stop string is held until it is known not to be one.
* When a row emits a stop token, its whole token list is decoded once more (as
  :func:`ladder.generation.generate` does) and whatever was held is released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ladder.serve.schema import find_stop, holdback

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ChoiceStreamer", "StopStreaming", "StreamedChoice"]

logger = logging.getLogger(__name__)

_REPLACEMENT = "\ufffd"


class StopStreaming(Exception):
    """Raised from ``put()`` to end generation early: every choice is complete, or the client left."""


@attrs.define
class StreamedChoice:
    """One row of the batch as it is generated.

    Attributes:
        tokens: its tokens so far (the stop token not included).
        text: its text so far: only ever appended to, or cut at a stop string; after
            :meth:`ChoiceStreamer.finish`, the whole answer.
        sent: how many characters of ``text`` have been handed to ``on_text``.
        finish_reason: ``"stop"`` (stop token or stop string), ``"length"``, or ``None`` while running.
    """

    tokens: list[int] = attrs.Factory(list)
    text: str = ""
    sent: int = 0
    finish_reason: str | None = None
    prefix_offset: int = 0  # the detokenizing window: tokens[prefix_offset:read_offset] were already text
    read_offset: int = 0


class ChoiceStreamer:
    """Streams the rows of one ``generate()`` batch as text deltas.

    Args:
        tokenizer: decodes the tokens (special tokens skipped, as in generated answers).
        n: rows in the batch (choices of the request).
        stop_ids: token ids that end an answer (:func:`ladder.generation.stop_token_ids`).
        stops: stop strings; a row ends before the first one it completes.
        on_text: called with ``(row, delta)`` for each new piece of text, from the generating thread.
        cancelled: once set, the next step raises :class:`StopStreaming`.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        n: int,
        *,
        stop_ids: Sequence[int],
        stops: Sequence[str] = (),
        on_text: Callable[[int, str], None],
        cancelled: threading.Event | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.stops = tuple(stops)
        self.on_text = on_text
        self.cancelled = cancelled or threading.Event()
        self.choices = [StreamedChoice() for _ in range(n)]
        self._prompt_seen = False

    # -- transformers' streamer protocol

    def put(self, value: Any) -> None:
        """Take the prompt ids (first call, ignored) or one step's new token per row."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self.cancelled.is_set():
            raise StopStreaming("the client went away")
        for i, ids in enumerate(value.reshape(len(self.choices), -1).tolist()):
            for token in ids:
                self._step(i, token)
        if all(c.finish_reason is not None for c in self.choices):
            raise StopStreaming("every choice is complete")

    def end(self) -> None:
        """Generation ended (transformers calls this); :meth:`finish` settles what is left."""

    # -- results

    def finish(self) -> None:
        """Release every row's held text and give each a ``finish_reason``.

        A row that neither produced a stop token nor completed a stop string ran into the
        token limit (``"length"``).
        """
        for i, choice in enumerate(self.choices):
            if choice.finish_reason is None:
                choice.finish_reason = "length"
                self._settle(i, choice)

    # -- internals

    def _decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    def _step(self, i: int, token: int) -> None:
        choice = self.choices[i]
        if choice.finish_reason is not None:  # a finished row is padded until the batch ends
            return
        if token in self.stop_ids:
            choice.finish_reason = "stop"
            self._settle(i, choice)
            return
        choice.tokens.append(token)
        prefix = self._decode(choice.tokens[choice.prefix_offset : choice.read_offset])
        window = self._decode(choice.tokens[choice.prefix_offset :])
        if len(window) > len(prefix) and not window.endswith(_REPLACEMENT):
            choice.text += window[len(prefix) :]
            choice.prefix_offset, choice.read_offset = choice.read_offset, len(choice.tokens)
            self._release(i, choice, final=False)

    def _settle(self, i: int, choice: StreamedChoice) -> None:
        """The row is complete: decode all of it once more, as a whole answer is, and release the rest."""
        whole = self._decode(choice.tokens)
        if not whole.startswith(choice.text[: choice.sent]):
            logger.warning("row %d: the streamed text is not a prefix of the whole answer %r", i, whole)
        choice.text = whole
        self._release(i, choice, final=True)

    def _release(self, i: int, choice: StreamedChoice, *, final: bool) -> None:
        # No stop string can start before `sent`: text that could begin one is never sent.
        cut = find_stop(choice.text, self.stops, choice.sent)
        if cut is not None:
            choice.text, choice.finish_reason = choice.text[:cut], "stop"
            safe = cut
        else:
            safe = len(choice.text) - (0 if final else holdback(choice.text, self.stops))
        if safe > choice.sent:
            delta, choice.sent = choice.text[choice.sent : safe], safe
            self.on_text(i, delta)
