"""Log-probabilities of answers under a model, and preference accuracy from them.

A pair's answer is scored the way TRL's ``DPOTrainer`` scores it: the prompt is rendered with
the chat template and the generation prompt, the prompt plus the answer as a whole
conversation, and the answer's tokens are those after the two renderings' common prefix (so
the end-of-turn token the template appends is part of the answer). The score is the sum of
those tokens' log-probabilities.

Preference accuracy is DPO's implicit-reward accuracy: the share of pairs where
``beta * (logp_policy - logp_ref)`` is higher for the chosen answer than for the rejected one
(ties count half). Before DPO trains, policy and reference are the same model, so it is 0.5 by
construction; the reference-free ``logp_accuracy`` (chosen more likely than rejected) is what
tells two checkpoints apart on their own.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["answer_token_ids", "answer_logprobs", "preference_metrics"]

logger = logging.getLogger(__name__)


def _as_messages(prompt: str | Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], *, gen: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=gen)
    return list(out["input_ids"])


def answer_token_ids(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[Mapping[str, str]],
    answers: Sequence[str],
) -> tuple[list[int], list[list[int]]]:
    """Token ids of the prompt and of each answer, split as TRL's ``DPOTrainer`` splits them.

    With a chat template the prompt is rendered with the generation prompt and each
    ``prompt + answer`` as a whole conversation; the prompt part is their shortest common
    prefix. Without a chat template (a raw base model) a string prompt is plain text and each
    answer is followed by the EOS token, like TRL's non-conversational format.

    Returns:
        ``(prompt_ids, [answer_ids, ...])``.

    Raises:
        ConfigError: the prompt is a list of messages but the tokenizer has no chat template.
    """
    if not tokenizer.chat_template:
        if not isinstance(prompt, str):
            raise ConfigError(
                "the tokenizer has no chat template, so chat prompts cannot be rendered; run SFT first "
                "or set chat_template in the stage config"
            )
        p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        fulls = [tokenizer(prompt + a + (tokenizer.eos_token or ""), add_special_tokens=True)["input_ids"]
                 for a in answers]
    else:
        messages = _as_messages(prompt)
        p = _ids(tokenizer, messages, gen=True)
        fulls = [_ids(tokenizer, [*messages, {"role": "assistant", "content": a}], gen=False) for a in answers]
    n = min([len(p), *(_common_prefix(p, f) for f in fulls)])
    return list(p[:n]), [list(f[n:]) for f in fulls]


def _accepts_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _score_batch(model: Any, sequences: list[tuple[list[int], int]], pad_id: int) -> list[float]:
    """Sum of the last ``n`` tokens' log-probs for each ``(ids, n)``; left-padded, one forward pass."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in sequences)
    keep = max(n for _, n in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (ids, _n) in enumerate(sequences):
        input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[i, width - len(ids):] = 1
    # Explicit positions make left padding exact for every position-embedding scheme.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
        "use_cache": False,
    }
    # Only the last `keep + 1` positions predict answer tokens: skip the rest of the vocab-sized logits.
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep + 1
    logits = model(**kwargs).logits[:, -(keep + 1):-1, :].float()
    targets = kwargs["input_ids"][:, -keep:]
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    out = []
    for i, (_ids, n) in enumerate(sequences):
        out.append(float(token_logps[i, keep - n:].sum().item()))
    return out


def answer_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 4,
    max_length: int | None = None,
) -> tuple[list[float], list[float]]:
    """Summed log-probs of each pair's chosen and rejected answer under ``model``.

    Args:
        model: a causal LM (a PEFT model scores with its adapter as it is set).
        tokenizer: its tokenizer, carrying the chat template to render with.
        pairs: rows ``{"prompt": str | messages, "chosen": str, "rejected": str}``.
        batch_size: pairs per forward pass (each pair is two sequences).
        max_length: truncate ``prompt + answer`` to this many tokens, keeping the start
            (TRL's ``keep_start``); a pair whose prompt alone fills it is not scored.

    Returns:
        ``(chosen, rejected)``, aligned with ``pairs``; ``nan`` for pairs not scored.
    """
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded: list[tuple[list[int], int, list[int], int] | None] = []
    for pair in pairs:
        p, (c, r) = answer_token_ids(tokenizer, pair["prompt"], [pair["chosen"], pair["rejected"]])
        full_c, full_r = p + c, p + r
        if max_length is not None:
            full_c, full_r = full_c[:max_length], full_r[:max_length]
        # The first token has nothing before it to predict it from.
        nc, nr = min(len(full_c) - len(p), len(full_c) - 1), min(len(full_r) - len(p), len(full_r) - 1)
        encoded.append((full_c, nc, full_r, nr) if nc > 0 and nr > 0 else None)
    skipped = sum(e is None for e in encoded)
    if skipped:
        logger.warning("%d pair(s) not scored: the prompt alone fills max_length=%s", skipped, max_length)

    chosen = [math.nan] * len(pairs)
    rejected = [math.nan] * len(pairs)
    todo = [i for i, e in enumerate(encoded) if e is not None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(todo), batch_size):
                idx = todo[start:start + batch_size]
                seqs: list[tuple[list[int], int]] = []
                for i in idx:
                    fc, nc, fr, nr = encoded[i]  # type: ignore[misc]
                    seqs += [(fc, nc), (fr, nr)]
                scores = _score_batch(model, seqs, pad_id)
                for k, i in enumerate(idx):
                    chosen[i], rejected[i] = scores[2 * k], scores[2 * k + 1]
    finally:
        if was_training:
            model.train()
    return chosen, rejected


def _share(wins: Sequence[float]) -> float:
    return sum(wins) / len(wins) if wins else math.nan


def _win(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def preference_metrics(
    chosen: Sequence[float],
    rejected: Sequence[float],
    ref_chosen: Sequence[float] | None = None,
    ref_rejected: Sequence[float] | None = None,
    *,
    beta: float = 0.1,
) -> dict[str, float | int]:
    """Accuracy and mean margin of DPO's implicit reward, plus reference-free log-prob accuracy.

    Args:
        chosen, rejected: the policy's summed answer log-probs (``nan`` entries are skipped).
        ref_chosen, ref_rejected: the reference model's; without them the reward is
            ``beta * logp`` (reference-free).
        beta: DPO's beta.

    Returns:
        ``{"accuracy", "margin", "logp_accuracy", "n"}``; ties count half.

    >>> preference_metrics([-1.0, -2.0], [-2.0, -1.0], [-1.0, -1.0], [-1.0, -1.0], beta=0.5)
    {'accuracy': 0.5, 'margin': 0.0, 'logp_accuracy': 0.5, 'n': 2}
    >>> preference_metrics([-1.0, -1.0], [-3.0, -1.0], [-2.0, -1.0], [-2.0, -1.0])["accuracy"]
    0.75
    """
    if ref_chosen is None or ref_rejected is None:
        ref_chosen = [0.0] * len(chosen)
        ref_rejected = [0.0] * len(rejected)
    acc, margins, logp_acc = [], [], []
    for c, r, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected, strict=True):
        if any(math.isnan(v) for v in (c, r, rc, rr)):
            continue
        reward_c, reward_r = beta * (c - rc), beta * (r - rr)
        acc.append(_win(reward_c, reward_r))
        margins.append(reward_c - reward_r)
        logp_acc.append(_win(c, r))
    return {
        "accuracy": _share(acc),
        "margin": _share(margins),
        "logp_accuracy": _share(logp_acc),
        "n": len(acc),
    }
