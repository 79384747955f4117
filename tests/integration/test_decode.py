"""ladder's decode loop against transformers' generate() on the tiny model: the same tokens,
fewer rows computed once rows finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GenerationConfig

from ladder.decode import _choose, decode, supports
from ladder.generation import _inference_state, encode_text, render_prompt
from ladder.training.models import load_model

PROMPTS = [
    "hi",
    "Explain photosynthesis to a ten year old.",
    "Who made you?",
    "How many apples? Answer: 12 apples in total.",
    "Name three colours.",
    "What is 7 + 5?",
]
STEPS = 12


def _batch(tok: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [encode_text(tok, render_prompt(tok, p)) for p in PROMPTS]
    width = max(map(len, ids))
    pad = tok.pad_token_id
    return (torch.tensor([[pad] * (width - len(i)) + i for i in ids]),
            torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]))


def _hf(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, stops: list[int], seed: int | None = None,
        **sampling: Any) -> list[list[int]]:
    """transformers' generate(), each row cut after its first stop token."""
    config = GenerationConfig(max_new_tokens=STEPS, eos_token_id=stops or None, pad_token_id=0,
                              **(sampling or {"do_sample": False}))
    with _inference_state(model, seed):
        out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    rows = []
    for row in out[:, input_ids.shape[1]:].tolist():
        cut = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
        rows.append(row[:cut])
    return rows


def _ours(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, stops: list[int], seed: int | None = None,
          **sampling: Any) -> list[list[int]]:
    with _inference_state(model, seed):
        return decode(model, input_ids, mask, max_new_tokens=STEPS, stop_ids=stops, **sampling)


def _staggered_stop(model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> int:
    """A token the random model emits at different steps in different rows (and never in
    some): taken as the stop token, the rows finish at different times."""
    free = _hf(model, input_ids, mask, [])
    firsts: dict[int, set[int | None]] = {}
    for token in {t for row in free for t in row}:
        firsts[token] = {row.index(token) if token in row else None for row in free}
    best = max(firsts, key=lambda t: (len(firsts[t]), None in firsts[t]))
    assert len(firsts[best]) >= 3, firsts
    return best


def test_greedy_tokens_equal_generate_while_rows_finish_at_different_steps(model: Any, tok: Any) -> None:
    input_ids, mask = _batch(tok)
    stop = _staggered_stop(model, input_ids, mask)
    ours = _ours(model, input_ids, mask, [stop])
    assert ours == _hf(model, input_ids, mask, [stop])
    lengths = {len(row) for row in ours}
    assert len(lengths) >= 2 and min(lengths) < STEPS  # rows did finish early, at different steps
    assert all(row[-1] == stop or len(row) == STEPS for row in ours)
    assert all(stop not in row[:-1] for row in ours)


def test_finished_rows_leave_the_forward_pass(model: Any, tok: Any) -> None:
    input_ids, mask = _batch(tok)
    stop = _staggered_stop(model, input_ids, mask)
    rows_per_call: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _module, _args, kwargs: rows_per_call.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        ours = _ours(model, input_ids, mask, [stop])
    finally:
        hook.remove()
    # One prefill with every row, then one call per further token with the rows still going.
    assert rows_per_call[0] == len(PROMPTS)
    assert rows_per_call == sorted(rows_per_call, reverse=True)
    still_going = [sum(len(row) > step for row in ours) for step in range(1, max(map(len, ours)))]
    assert rows_per_call[1:] == still_going
    assert sum(rows_per_call[1:]) < (len(rows_per_call) - 1) * len(PROMPTS)


def test_sampling_draws_what_generate_draws_while_no_row_has_finished(model: Any, tok: Any) -> None:
    input_ids, mask = _batch(tok)
    sampling = {"temperature": 0.9, "top_p": 0.8}
    hf = _hf(model, input_ids, mask, [], seed=3, do_sample=True, top_k=0, **sampling)
    assert _ours(model, input_ids, mask, [], seed=3, **sampling) == hf
    assert _ours(model, input_ids, mask, [], seed=4, **sampling) != hf


def test_a_small_top_p_samples_only_the_most_likely_token() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 300, generator=gen) * 3
    torch.manual_seed(0)
    for _ in range(20):
        assert torch.equal(_choose(logits, 1.0, 1e-6), logits.argmax(-1))
    assert not all(torch.equal(_choose(logits, 1.0, 1.0), logits.argmax(-1)) for _ in range(20))


def test_the_token_limit_counts_the_stop_token(model: Any, tok: Any) -> None:
    input_ids, mask = _batch(tok)
    with _inference_state(model, None):
        rows = decode(model, input_ids, mask, max_new_tokens=1, stop_ids=[])
    assert [len(r) for r in rows] == [1] * len(PROMPTS)


def test_the_environment_can_turn_the_loop_off(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_DECODE_LOOP", "0")
    assert not supports(model)
    monkeypatch.setenv("LADDER_DECODE_LOOP", "1")
    assert supports(model)


def test_a_peft_model_decodes_through_its_wrapper(model: Any, tiny_model: Path, tok: Any) -> None:
    from peft import LoraConfig, get_peft_model

    assert supports(model)
    wrapped = get_peft_model(load_model(tiny_model, device="cpu"),
                             LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    assert supports(wrapped)
    assert not supports(object())
    input_ids, mask = _batch(tok)
    stop = _staggered_stop(wrapped, input_ids, mask)
    ours = _ours(wrapped, input_ids, mask, [stop])
    assert ours == _hf(wrapped, input_ids, mask, [stop])
    assert ours != _ours(model, input_ids, mask, [stop])  # the adapter is in the forward pass
