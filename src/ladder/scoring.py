"""Log-probabilities of responses under a causal LM: the raw material of preference scores.

:func:`tokenize_pair` turns (prompt, response) into token ids the way the chat template writes
an assistant turn; :func:`response_logprobs` scores many such sequences in padded batches.
:mod:`ladder.evaluate` builds preference accuracies on top.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ladder.generation import END_OF_TURN_TOKENS, as_messages, chat_text, encode_text, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["response_logprobs", "scoring", "tokenize_pair"]


@contextlib.contextmanager
def scoring(*models: Any) -> Iterator[None]:
    import torch

    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


def _end_of_turn_id(tokenizer: PreTrainedTokenizerBase, stops: Sequence[int]) -> int | None:
    for tid in stops:
        if tokenizer.convert_ids_to_tokens(tid) in END_OF_TURN_TOKENS:
            return tid
    return tokenizer.eos_token_id


def tokenize_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: Any, response: str, stops: Sequence[int]
) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): the response as the chat template writes an assistant turn."""
    messages = as_messages(prompt)
    prompt_text = render_prompt(tokenizer, messages)
    full = chat_text(
        tokenizer, [*messages, {"role": "assistant", "content": response}], add_generation_prompt=False
    )
    if full.startswith(prompt_text):
        response_ids = encode_text(tokenizer, full[len(prompt_text) :])
        # Keep up to the end-of-turn token: what follows (ChatML's "\n") is layout, not answer.
        stop_set = set(stops)
        last = max((k for k, t in enumerate(response_ids) if t in stop_set), default=None)
        if last is not None:
            response_ids = response_ids[: last + 1]
    else:
        # Templates that rewrite earlier turns (e.g. dropping reasoning) break the prefix;
        # fall back to the response text followed by the end-of-turn token.
        end = _end_of_turn_id(tokenizer, stops)
        response_ids = encode_text(tokenizer, response) + ([end] if end is not None else [])
    return encode_text(tokenizer, prompt_text), response_ids


def response_logprobs(
    model: PreTrainedModel,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 8,
    pad_id: int = 0,
) -> list[float]:
    """Summed log-probability of each response given its prompt.

    Args:
        model: a causal LM.
        sequences: ``(prompt_ids, response_ids)`` pairs.
        batch_size: sequences scored together (right-padded, masked).
        pad_id: the id used for padding (masked, its value does not matter).
    """
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: -(len(sequences[i][0]) + len(sequences[i][1])))
    scores = [0.0] * len(sequences)
    with scoring(model):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            rows = [list(sequences[i][0]) + list(sequences[i][1]) for i in batch]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            for b, i in enumerate(batch):
                p, n = len(sequences[i][0]), len(sequences[i][1])
                if n == 0:
                    continue
                # The token at position j is predicted by the logits at j - 1.
                step_logits = logits[b, p - 1 : p + n - 1].float()
                targets = input_ids[b, p : p + n].unsqueeze(-1)
                scores[i] = step_logits.log_softmax(-1).gather(-1, targets).sum().item()
    return scores
