"""Evaluations on held-out data: preference accuracy and verifiable-answer accuracy.

Both run on any checkpoint of the ladder, the base included, so a metric table shows each
rung's effect: DPO should raise preference accuracy, GRPO exact match and format rate.

Preference accuracy scores each response by its log-probability under the model, given the
chat-templated prompt (response tokens only, end-of-turn token included, see
:mod:`ladder.scoring`):

* **the model's own preference** (no ``ref_model``): the score is ``logp_policy(response |
  prompt)``, summed over the response's tokens (``accuracy``) and as a mean per token
  (``accuracy_per_token``: a summed log-prob favours whichever answer is shorter, the mean
  does not). Each is measured on every checkpoint, the base included: the base already
  prefers some chosen answers and not others, and a stage moves that.
* **DPO implicit reward** (``ref_model`` given): ``beta * (logp_policy - logp_ref)``, the
  reward DPO optimises; its margin is what DPO's ``rewards/margins`` logs. Against the model
  itself it is 0 for every answer, so it is a diagnostic of how far a stage moved, not a
  headline number.

A pair counts as correct when the chosen response scores higher than the rejected one (a tie
counts one half).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import DataError, RewardError
from ladder.generation import GenerationSettings, answer, as_messages, chat_text, encode_text, stop_token_ids
from ladder.scoring import response_logprobs, scoring, tokenize_pair

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "check_pairs",
    "check_problems",
    "heldout_preference",
    "own_preference",
    "pair_logprobs",
    "pair_scores",
    "preference_accuracy",
    "preference_summary",
    "response_logprobs",
    "reward_model_accuracy",
    "reward_scores",
    "reward_text",
    "verifiable_accuracy",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rows


def _check_prompt(value: Any, source: str, row: int) -> None:
    if isinstance(value, str):
        return
    try:
        as_messages(value)
    except Exception as exc:
        raise DataError(
            "must be a string or a list of {role, content} messages", source=source, row=row, field="prompt"
        ) from exc


def check_pairs(pairs: Sequence[Mapping[str, Any]], source: str = "preference eval") -> None:
    """Raise :class:`DataError` naming the row and field of the first malformed pair."""
    for i, row in enumerate(pairs):
        if not isinstance(row, Mapping):
            raise DataError(f"expected a mapping, got {type(row).__name__}", source=source, row=i)
        for field in ("prompt", "chosen", "rejected"):
            if field not in row:
                raise DataError(
                    "missing; a pair needs prompt, chosen and rejected", source=source, row=i, field=field
                )
        _check_prompt(row["prompt"], source, i)
        for field in ("chosen", "rejected"):
            if not isinstance(row[field], str):
                raise DataError(
                    f"must be a string (the response text), got {type(row[field]).__name__}",
                    source=source,
                    row=i,
                    field=field,
                )


def check_problems(problems: Sequence[Mapping[str, Any]], source: str = "verifiable eval") -> None:
    """Raise :class:`DataError` naming the row and field of the first malformed problem."""
    for i, row in enumerate(problems):
        if not isinstance(row, Mapping):
            raise DataError(f"expected a mapping, got {type(row).__name__}", source=source, row=i)
        for field in ("prompt", "answer"):
            if field not in row or row[field] is None:
                raise DataError(
                    "missing; a problem needs prompt and answer", source=source, row=i, field=field
                )
        _check_prompt(row["prompt"], source, i)
        if isinstance(row["answer"], str) and not row["answer"].strip():
            raise DataError("is blank; give the reference answer", source=source, row=i, field="answer")


# --------------------------------------------------------------------------- log-probs


def _summary(chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, Any]:
    n = len(chosen)
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True))
    margin = sum(c - r for c, r in zip(chosen, rejected, strict=True))
    return {"accuracy": wins / n if n else 0.0, "margin": margin / n if n else 0.0, "n": n}


def pair_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 8,
) -> tuple[list[float], list[int]]:
    """Summed response log-probs and token counts of each pair's answers.

    Both lists run ``[chosen_0, rejected_0, chosen_1, ...]``; one forward pass per answer.
    """
    check_pairs(pairs)
    stops = stop_token_ids(model, tokenizer)
    sequences = []
    for row in pairs:
        sequences.append(tokenize_pair(tokenizer, row["prompt"], row["chosen"], stops))
        sequences.append(tokenize_pair(tokenizer, row["prompt"], row["rejected"], stops))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = response_logprobs(model, sequences, batch_size=batch_size, pad_id=pad_id)
    return scores, [len(response) for _prompt, response in sequences]


def pair_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 8,
) -> list[float]:
    """Summed response log-probs of each pair's answers: ``[chosen_0, rejected_0, chosen_1, ...]``.

    One forward pass per answer. :func:`preference_summary` turns the scores of a policy (and of
    a reference) into accuracies, so a caller that needs both the reference-free and the
    implicit-reward accuracy, or scores several policies against one reference, scores each
    model once.
    """
    return pair_scores(model, tokenizer, pairs, batch_size=batch_size)[0]


def own_preference(scores: Sequence[float], lengths: Sequence[int]) -> dict[str, Any]:
    """The model's own preference from :func:`pair_scores`: summed and per-token log-probs.

    Returns:
        ``{"accuracy", "margin"}`` (summed log-probs), ``{"accuracy_per_token",
        "margin_per_token"}`` (mean log-prob per response token) and ``n``.

    >>> own_preference([-4.0, -6.0, -9.0, -3.0], [2, 2, 6, 1])["accuracy"]
    0.5
    >>> own_preference([-4.0, -6.0, -9.0, -3.0], [2, 2, 6, 1])["accuracy_per_token"]
    1.0
    """
    summed = _summary(scores[0::2], scores[1::2])
    means = [s / max(n, 1) for s, n in zip(scores, lengths, strict=True)]
    per_token = _summary(means[0::2], means[1::2])
    return {"accuracy": summed["accuracy"], "margin": summed["margin"],
            "accuracy_per_token": per_token["accuracy"], "margin_per_token": per_token["margin"], "n": summed["n"]}


def preference_summary(
    scores: Sequence[float], ref_scores: Sequence[float] | None = None, *, beta: float = 0.1
) -> dict[str, Any]:
    """Accuracy and margin from :func:`pair_logprobs` scores (implicit reward with ``ref_scores``)."""
    if ref_scores is not None:
        if len(ref_scores) != len(scores):
            raise ValueError(f"{len(scores)} policy scores but {len(ref_scores)} reference scores")
        scores = [beta * (s - r) for s, r in zip(scores, ref_scores, strict=True)]
    return _summary(scores[0::2], scores[1::2])


def heldout_preference(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    reference_scores: Sequence[float] | None = None,
    beta: float = 0.1,
    batch_size: int = 8,
) -> tuple[dict[str, Any] | None, list[float]]:
    """A training stage's held-out preference metrics, before or after training, and the scores.

    Call it once on the input policy before training (``reference_scores`` None: the policy
    *is* the reference, so ``accuracy`` is 0.5 and ``margin`` 0 by construction), and once after
    training with the scores the first call returned: ``accuracy``/``margin`` are then the
    implicit reward ``beta * (logp - logp_input)``, on how many pairs the policy moved towards
    the chosen answer more than towards the rejected one. ``logp_accuracy``/``logp_margin`` are
    reference-free (summed log-probs; they favour the shorter answer). Each call scores
    ``model`` once.

    Returns:
        ``(None, [])`` without pairs; else ``({"accuracy", "margin", "logp_accuracy",
        "logp_margin", "n"}, per-answer scores)``.
    """
    if not pairs:
        return None, []
    scores = pair_logprobs(model, tokenizer, pairs, batch_size=batch_size)
    logp = preference_summary(scores)
    implicit = (
        preference_summary(scores, reference_scores, beta=beta)
        if reference_scores is not None
        else {"accuracy": 0.5, "margin": 0.0}
    )
    return {"accuracy": implicit["accuracy"], "margin": implicit["margin"], "logp_accuracy": logp["accuracy"],
            "logp_margin": logp["margin"], "n": logp["n"]}, scores


def preference_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    ref_model: PreTrainedModel | None = None,
    beta: float = 0.1,
    batch_size: int = 8,
) -> dict[str, Any]:
    """How often the model prefers the chosen response of held-out preference pairs.

    Args:
        model: the policy (a causal LM).
        tokenizer: its tokenizer; its chat template renders the prompts and responses.
        pairs: rows ``{"prompt": str | messages, "chosen": str, "rejected": str}``.
        ref_model: when given, scores are DPO's implicit reward
            ``beta * (logp_model - logp_ref)``; otherwise the reference-free ``logp_model``
            (see the module docstring).
        beta: DPO's beta (only with ``ref_model``).
        batch_size: sequences scored together.

    Returns:
        ``{"accuracy": share of pairs with chosen > rejected (ties 1/2), "margin": mean of
        score(chosen) - score(rejected), "n": number of pairs}``.
    """
    scores = pair_logprobs(model, tokenizer, pairs, batch_size=batch_size)
    ref = pair_logprobs(ref_model, tokenizer, pairs, batch_size=batch_size) if ref_model is not None else None
    return preference_summary(scores, ref, beta=beta)


def reward_text(tokenizer: PreTrainedTokenizerBase, prompt: Any, response: str) -> str:
    """The text a reward model scores: prompt + response as one conversation, chat-templated.

    It is the text TRL's ``RewardTrainer`` trains the reward model on and the one
    ``GRPOTrainer``/``RLOOTrainer`` score completions with (the whole conversation rendered
    by the reward model's template, no generation prompt), so a held-out accuracy measured
    here is the accuracy of the reward the RL stages optimise.
    """
    messages = [*as_messages(prompt), {"role": "assistant", "content": response}]
    return chat_text(tokenizer, messages, add_generation_prompt=False)


def reward_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[float]:
    """A reward model's scalar score of each text (tokenized without added special tokens).

    One text per forward pass: no padding for the classifier's pooling (at the last token that
    is not the pad token) to get wrong, and identical texts get bit-identical scores, which
    batched CPU matrix products do not guarantee.
    """
    import torch

    device = next(model.parameters()).device
    scores: list[float] = []
    with scoring(model):
        for text in texts:
            input_ids = torch.tensor([encode_text(tokenizer, text)], device=device)
            scores.append(model(input_ids=input_ids).logits[0, 0].float().item())
    return scores


def reward_model_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Preference accuracy of a reward model (a sequence classifier with one output).

    Each response is scored by the model's scalar output on :func:`reward_text` (the
    conversation as the reward stage trained on it and the RL stages score it). The reward
    stage measures its held-out accuracy with this function and the pipeline evaluates reward
    checkpoints with it, so both report the same number.

    Returns:
        ``{"accuracy": share of pairs whose chosen response scores higher (ties 1/2),
        "margin": mean score(chosen) - score(rejected), "n": number of pairs}``.
    """
    check_pairs(pairs)
    texts = []
    for row in pairs:
        texts.append(reward_text(tokenizer, row["prompt"], row["chosen"]))
        texts.append(reward_text(tokenizer, row["prompt"], row["rejected"]))
    scores = reward_scores(model, tokenizer, texts)
    return _summary(scores[0::2], scores[1::2])


# --------------------------------------------------------------------------- verifiable


def _reward_values(name: str, values: Any, n: int) -> list[float]:
    """The scored values (``None`` means "not scored", as TRL reads it)."""
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise RewardError(f"reward {name!r} returned {values!r}; expected a list of {n} floats")
    out = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise RewardError(f"reward {name!r} returned {v!r}; every value must be a finite number")
        out.append(float(v))
    return out


def verifiable_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Mapping[str, Any]],
    settings: GenerationSettings | None = None,
) -> dict[str, Any]:
    """Exact-match and format rate of greedy answers to held-out verifiable problems.

    Answers are generated greedily (``settings.temperature`` is overridden to 0) and scored
    with ladder's registered rewards ``exact_match`` and ``tag_format``, the same functions
    GRPO trains with.

    Args:
        problems: rows ``{"prompt": str | messages, "answer": str}`` (``answer`` as
            ``exact_match`` reads it: ``"42"``, GSM8K's ``"... #### 42"``, or a list of
            accepted answers).
        settings: generation settings (``max_new_tokens``, ``batch_size``).

    Returns:
        ``{"exact_match": mean exact-match reward, "format_rate": mean format reward, "n":
        number of problems}``; a reward's ``None`` (not scored) is left out of its mean.
    """
    from ladder.registry import rewards

    check_problems(problems)
    settings = attrs.evolve(settings or GenerationSettings(), temperature=0.0)
    prompts = [row["prompt"] for row in problems]
    answers = [row["answer"] for row in problems]
    gens = answer(model, tokenizer, prompts, settings)
    completions = [g.text for g in gens]
    result: dict[str, Any] = {}
    for key, name in (("exact_match", "exact_match"), ("format_rate", "tag_format")):
        func = rewards.get(name)
        try:
            values = func(completions=completions, answer=answers, prompts=prompts)
        except Exception as exc:
            raise RewardError(f"reward {name!r} failed while evaluating: {exc}") from exc
        values = _reward_values(name, values, len(completions))
        result[key] = sum(values) / len(values) if values else 0.0
    result["n"] = len(problems)
    return result
