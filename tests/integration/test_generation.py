"""Generation on the tiny model: deterministic, batch-invariant, stops where it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ladder.generation import (
    Generation,
    GenerationSettings,
    TransformersGenerator,
    _finish,
    generate,
    render_prompt,
    stop_token_ids,
)
from ladder.generators import load_generator
from ladder.training.models import load_model

# Prompts of different lengths (12 to 31 tokens), so batches need left padding.
PROMPTS: list[Any] = [
    "hi",
    "Explain photosynthesis to a ten year old.",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made you?"}],
    "How many apples? Answer: 12 apples in total.",
]
SETTINGS = GenerationSettings(max_new_tokens=16, batch_size=3)


def test_stop_tokens_are_eos_and_end_of_turn(model: Any, tok: Any) -> None:
    assert stop_token_ids(model, tok) == (
        tok.convert_tokens_to_ids("<|endoftext|>"),
        tok.convert_tokens_to_ids("<|im_end|>"),
    )


def test_prompt_is_the_chat_template_with_generation_prompt(tok: Any) -> None:
    assert render_prompt(tok, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_greedy_is_byte_identical_when_run_twice(model: Any, tok: Any) -> None:
    first = generate(model, tok, PROMPTS, SETTINGS)
    second = generate(model, tok, PROMPTS, SETTINGS)
    assert first == second
    assert [g.text.encode() for g in first] == [g.text.encode() for g in second]
    assert len(first) == len(PROMPTS)
    assert all(isinstance(g, Generation) for g in first)


def test_greedy_does_not_depend_on_the_batch(model: Any, tok: Any) -> None:
    one_by_one = [generate(model, tok, [p], SETTINGS)[0] for p in PROMPTS]
    in_batches_of_3 = generate(model, tok, PROMPTS, SETTINGS)
    all_at_once = generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=16, batch_size=8))
    assert in_batches_of_3 == one_by_one
    assert all_at_once == one_by_one


def test_answers_respect_the_token_limit(model: Any, tok: Any) -> None:
    for g in generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=5)):
        assert g.num_tokens <= 5
        assert g.finish_reason == ("stop" if g.stopped else "length")
        if not g.stopped:
            assert g.num_tokens == 5


def test_finish_cuts_at_the_first_stop_token(tok: Any) -> None:
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    a, b = (
        tok("Paris", add_special_tokens=False)["input_ids"][:1],
        tok(" Rome", add_special_tokens=False)["input_ids"][:1],
    )
    stops = (0, im_end)
    g = _finish([*a, *b, im_end, 0, 0], stops, tok)
    assert g == Generation(tok.decode([*a, *b]), 2, True, "stop")
    assert _finish([*a, *b], stops, tok) == Generation(tok.decode([*a, *b]), 2, False, "length")
    assert _finish([0, *a], stops, tok) == Generation("", 0, True, "stop")


def test_a_model_that_always_says_eos_stops_at_once(tiny_model: Path, tok: Any) -> None:
    model = load_model(tiny_model, device="cpu")
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: greedy picks id 0, the EOS
    gens = generate(model, tok, PROMPTS, SETTINGS)
    assert gens == [Generation("", 0, True, "stop")] * len(PROMPTS)


def test_the_checkpoints_generation_config_does_not_change_decoding(tiny_model: Path, tok: Any) -> None:
    model = load_model(tiny_model, device="cpu")
    baseline = generate(model, tok, PROMPTS, SETTINGS)
    config = model.generation_config
    config.repetition_penalty = 10.0
    config.do_sample = True
    config.top_k = 3
    assert generate(model, tok, PROMPTS, SETTINGS) == baseline
    assert model.generation_config is config and config.repetition_penalty == 10.0  # restored


def test_training_mode_and_global_rng_are_left_as_they_were(tiny_model: Path, tok: Any) -> None:
    model = load_model(tiny_model, device="cpu")
    model.train()
    state = torch.random.get_rng_state()
    generate(model, tok, PROMPTS[:2], GenerationSettings(max_new_tokens=4, temperature=1.0))
    assert model.training
    assert torch.equal(torch.random.get_rng_state(), state)


def test_sampling_is_reproducible_for_a_seed(model: Any, tok: Any) -> None:
    s1 = GenerationSettings(max_new_tokens=16, temperature=1.0, seed=1)
    s2 = GenerationSettings(max_new_tokens=16, temperature=1.0, seed=2)
    assert generate(model, tok, PROMPTS, s1) == generate(model, tok, PROMPTS, s1)
    assert generate(model, tok, PROMPTS, s1) != generate(model, tok, PROMPTS, s2)
    assert generate(model, tok, PROMPTS, s1) != generate(model, tok, PROMPTS, SETTINGS)


def test_load_generator_uses_transformers_without_vllm(tiny_model: Path, model: Any, tok: Any) -> None:
    generator = load_generator(tiny_model, settings=SETTINGS)
    assert isinstance(generator, TransformersGenerator)
    assert generator.backend == "transformers"
    assert generator.generate(PROMPTS) == generate(model, tok, PROMPTS, SETTINGS)
    generator.close()


def test_no_conversations_no_work(model: Any, tok: Any) -> None:
    assert generate(model, tok, []) == []
