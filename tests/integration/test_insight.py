"""Probes, evaluations and observe() on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ladder.checkpoint import Checkpoint
from ladder.errors import ConfigError, DataError
from ladder.evaluate import (
    pair_scores,
    preference_accuracy,
    response_logprobs,
    reward_model_accuracy,
    verifiable_accuracy,
)
from ladder.generation import GenerationSettings, generate, stop_token_ids
from ladder.insight import observe
from ladder.probes import DEFAULT_PROBES, Probe, run_probes
from ladder.registry import rewards
from ladder.scoring import tokenize_pair
from ladder.training.models import load_model, load_tokenizer

SETTINGS = GenerationSettings(max_new_tokens=8)
PAIRS = [
    {"prompt": "What is 2 + 3?", "chosen": "The answer is 5.", "rejected": "Paris."},
    {"prompt": [{"role": "user", "content": "Say hello."}], "chosen": "hello world", "rejected": "no"},
    {"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "The capital of Italy is Paris, I think."},
]
PROBLEMS = [
    {"prompt": "What is 7 + 8? Answer in <answer></answer> tags.", "answer": "15"},
    {"prompt": [{"role": "user", "content": "How many apples?"}], "answer": "12"},
    {"prompt": "Add 2 and 3.", "answer": "#### 5"},
]
PROBES = [
    Probe(id="bread", prompt="A recipe for bread, please."),
    Probe(
        id="few_shot",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "Who made you?"},
        ],
    ),
    Probe(id="short", prompt="What is 2 + 3?", max_new_tokens=3),
]


# --------------------------------------------------------------------------- probes


def test_probe_rows(model: Any, tok: Any) -> None:
    rows = run_probes(model, tok, PROBES, SETTINGS)
    assert [r["id"] for r in rows] == ["bread", "few_shot", "short"]
    for row in rows:
        assert set(row) == {"id", "prompt", "answer", "num_tokens", "stopped", "finish_reason"}
        assert isinstance(row["answer"], str)
        assert row["finish_reason"] == ("stop" if row["stopped"] else "length")
    assert rows[0]["prompt"] == "A recipe for bread, please."
    assert rows[1]["prompt"] == "user: hi\nassistant: hello\nuser: Who made you?"
    assert rows[0]["num_tokens"] <= 8
    assert rows[2]["num_tokens"] <= 3  # the probe's own limit wins
    # Probes go through the chat template: the same answer as generating the conversation.
    assert rows[1]["answer"] == generate(model, tok, [PROBES[1].conversation], SETTINGS)[0].text


# --------------------------------------------------------------------------- preference


def test_response_tokens_end_with_the_end_of_turn_token(tok: Any) -> None:
    stops = stop_token_ids(None, tok)
    prompt_ids, response_ids = tokenize_pair(tok, "What is 2 + 3?", "It is 5.", stops)
    assert tok.decode(prompt_ids) == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(response_ids) == "It is 5.<|im_end|>"


def test_summed_logprob_matches_a_direct_computation(model: Any, tok: Any) -> None:
    stops = stop_token_ids(model, tok)
    sequences = [tokenize_pair(tok, row["prompt"], row["chosen"], stops) for row in PAIRS]
    batched = response_logprobs(model, sequences, batch_size=3, pad_id=tok.pad_token_id)
    for (p, r), score in zip(sequences, batched, strict=True):
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logp = model(ids).logits[0].log_softmax(-1)
        expected = sum(logp[len(p) + k - 1, tok_id].item() for k, tok_id in enumerate(r))
        assert score == pytest.approx(expected, abs=1e-4)
        assert score < 0


def test_reference_model_equal_to_the_policy_gives_zero_margin(model: Any, tok: Any) -> None:
    assert preference_accuracy(model, tok, PAIRS, ref_model=model, beta=0.1) == {
        "accuracy": 0.5,
        "margin": 0.0,
        "n": 3,
    }


def test_identical_responses_are_ties(model: Any, tok: Any) -> None:
    pairs = [{**row, "rejected": row["chosen"]} for row in PAIRS]
    assert preference_accuracy(model, tok, pairs) == {"accuracy": 0.5, "margin": 0.0, "n": 3}


def test_swapping_chosen_and_rejected_mirrors_the_result(model: Any, tok: Any) -> None:
    forward = preference_accuracy(model, tok, PAIRS, batch_size=2)
    swapped = preference_accuracy(
        model, tok, [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS], batch_size=2
    )
    assert forward["n"] == swapped["n"] == 3
    assert 0.0 <= forward["accuracy"] <= 1.0
    assert swapped["accuracy"] == pytest.approx(1.0 - forward["accuracy"])
    assert swapped["margin"] == pytest.approx(-forward["margin"])
    assert forward["margin"] != 0.0


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": "p", "chosen": "c"}, "rejected"),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen"),
        ({"prompt": [{"content": "no role"}], "chosen": "c", "rejected": "r"}, "prompt"),
    ],
)
def test_malformed_pairs_name_row_and_field(model: Any, tok: Any, row: dict, field: str) -> None:
    with pytest.raises(DataError) as info:
        preference_accuracy(model, tok, [PAIRS[0], row])
    assert (info.value.row, info.value.field) == (1, field)


def test_reward_model_accuracy(tiny_model: Path, tok: Any) -> None:
    rm = load_model(tiny_model, kind="reward", device="cpu")
    ties = reward_model_accuracy(rm, tok, [{**r, "rejected": r["chosen"]} for r in PAIRS])
    assert ties == {"accuracy": 0.5, "margin": 0.0, "n": 3}
    forward = reward_model_accuracy(rm, tok, PAIRS)
    swapped = reward_model_accuracy(
        rm, tok, [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS]
    )
    assert swapped["accuracy"] == pytest.approx(1.0 - forward["accuracy"])
    assert swapped["margin"] == pytest.approx(-forward["margin"])


# --------------------------------------------------------------------------- verifiable


def test_verifiable_accuracy_scores_greedy_answers_with_the_registered_rewards(model: Any, tok: Any) -> None:
    result = verifiable_accuracy(model, tok, PROBLEMS, GenerationSettings(max_new_tokens=16, temperature=1.0))
    assert result["n"] == 3
    assert 0.0 <= result["exact_match"] <= 1.0 and 0.0 <= result["format_rate"] <= 1.0
    # Greedy whatever the settings say, scored by exact_match and tag_format.
    texts = [
        g.text
        for g in generate(model, tok, [p["prompt"] for p in PROBLEMS], GenerationSettings(max_new_tokens=16))
    ]
    answers = [p["answer"] for p in PROBLEMS]
    em = rewards.get("exact_match")(completions=texts, answer=answers)
    fmt = rewards.get("tag_format")(completions=texts, answer=answers)
    assert result["exact_match"] == pytest.approx(sum(em) / 3)
    assert result["format_rate"] == pytest.approx(sum(fmt) / 3)


def test_a_blank_reference_answer_is_a_data_error(model: Any, tok: Any) -> None:
    with pytest.raises(DataError) as info:
        verifiable_accuracy(model, tok, [PROBLEMS[0], {"prompt": "p", "answer": " "}], SETTINGS)
    assert (info.value.row, info.value.field) == (1, "answer")


# --------------------------------------------------------------------------- observe


def test_observe_writes_probes_and_measures(tiny_model: Path, tmp_path: Path) -> None:
    result = observe(
        Checkpoint.base(tiny_model),
        tmp_path / "a",
        probes=None,  # the defaults
        evals={"preference": PAIRS, "verifiable": PROBLEMS, "behaviour": {"limit": 4}},
        settings=SETTINGS,
    )
    rows = [json.loads(line) for line in (tmp_path / "a" / "probes.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in DEFAULT_PROBES]
    expected = {p.id: p.expect for p in DEFAULT_PROBES}
    for row in rows:  # a probe with a known answer is marked right or wrong
        assert ("passed" in row) is (expected[row["id"]] is not None)
        if expected[row["id"]] is not None:
            assert row["passed"] is expected[row["id"]].passed(row["answer"])
    assert set(result) == {"eval", "behaviour"}  # the base has no input to regress against
    assert set(result["eval"]) == {"preference", "verifiable"}
    assert result["eval"]["preference"]["n"] == 3 and result["eval"]["verifiable"]["n"] == 3
    behaviour = result["behaviour"]
    suites = {"knowledge", "instructions", "refusal", "over_refusal", "arithmetic"}
    assert set(behaviour) == {"mean_answer_tokens", "stop_rate", "repetition"} | suites
    items = [json.loads(line) for line in (tmp_path / "a" / "behaviour.jsonl").read_text("utf-8").splitlines()]
    assert len(items) == 4 * 4  # four suites, four items each (safety: two harmful, two benign)
    for metric in suites:
        mine = [i for i in items if i["metric"] == metric]
        record = behaviour[metric]
        assert record["n"] == len(mine) and record["k"] == sum(i["hit"] for i in mine)
        assert record["ci_low"] <= record["rate"] <= record["ci_high"]
    assert all(i["num_tokens"] <= SETTINGS.max_new_tokens for i in items)
    assert behaviour["mean_answer_tokens"] == pytest.approx(sum(r["num_tokens"] for r in rows) / len(rows))
    assert behaviour["stop_rate"] == sum(r["stopped"] for r in rows) / len(rows)
    assert 0.0 <= behaviour["repetition"] <= 1.0
    json.dumps(result)  # JSON-able, for metrics.json


def test_probing_the_same_checkpoint_twice_is_byte_identical(tiny_model: Path, tmp_path: Path) -> None:
    from ladder import insight

    for name in ("a", "b"):
        insight._RUNS.clear()  # answer the suites again, not from the cache
        observe(tiny_model, tmp_path / name, probes=PROBES, evals={"behaviour": {"limit": 6}}, settings=SETTINGS)
    first = (tmp_path / "a" / "probes.jsonl").read_bytes()
    assert first == (tmp_path / "b" / "probes.jsonl").read_bytes()
    assert len(first.splitlines()) == len(PROBES)
    suites = (tmp_path / "a" / "behaviour.jsonl").read_bytes()
    assert suites == (tmp_path / "b" / "behaviour.jsonl").read_bytes() and len(suites.splitlines()) == 24


def test_reward_checkpoints_answer_no_probes(tiny_model: Path, tmp_path: Path) -> None:
    ckpt = Checkpoint(path=str(tiny_model), stage="rm", kind="reward")
    result = observe(ckpt, tmp_path, probes=PROBES, evals={"preference": PAIRS, "behaviour": True}, settings=SETTINGS)
    assert not (tmp_path / "probes.jsonl").exists() and not (tmp_path / "behaviour.jsonl").exists()
    assert result["behaviour"] == {}
    assert result["eval"]["preference"]["n"] == 3


def test_no_probes_and_no_evals(tiny_model: Path, tmp_path: Path) -> None:
    # The behaviour suites run by default only beside the probes.
    assert observe(tiny_model, tmp_path, probes=[], evals=None) == {"eval": {}, "behaviour": {}}
    assert observe(tiny_model, tmp_path, probes=PROBES, evals={"behaviour": False}, settings=SETTINGS)[
        "behaviour"].keys() == {"mean_answer_tokens", "stop_rate", "repetition"}
    assert not (tmp_path / "behaviour.jsonl").exists()
    assert observe(tiny_model, tmp_path / "x", probes=[], evals={"behaviour": {"suites": ["knowledge"], "limit": 2}},
                   settings=SETTINGS)["behaviour"]["knowledge"]["n"] == 2
    assert not (tmp_path / "x" / "probes.jsonl").exists()


def test_unknown_evaluation_data(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown evaluation data"):
        observe(tiny_model, tmp_path, probes=[], evals={"mmlu": []})


def test_stages_are_compared_with_the_reference_scored_once(tiny_model: Path, tmp_path: Path) -> None:
    """observe() keeps the reference's per-answer log-probs: a stage observed after the base
    gets the same implicit-reward accuracy as scoring both models directly, with or without
    the kept scores."""
    from ladder import insight

    changed = load_model(tiny_model, device="cpu")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in changed.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    changed.save_pretrained(tmp_path / "changed")
    load_tokenizer(tiny_model).save_pretrained(tmp_path / "changed")
    base = Checkpoint(path=str(tiny_model), stage="base", fingerprint="base-fp")
    policy = Checkpoint(path=str(tmp_path / "changed"), stage="sft", fingerprint="sft-fp", parent=base)
    expected = preference_accuracy(changed, load_tokenizer(tiny_model), PAIRS,
                                   ref_model=load_model(tiny_model, device="cpu"), beta=0.1)

    insight._SCORES.clear()
    at_base = observe(base, tmp_path / "o0", probes=[], evals={"preference": PAIRS}, reference=base)
    assert len(insight._SCORES) == 1  # the base's scores, kept
    # At the base the implicit reward is 0 by construction: it is not reported there.
    assert not {"implicit_accuracy", "implicit_margin", "reference"} & set(at_base["eval"]["preference"])
    kept = observe(policy, tmp_path / "o1", probes=[], evals={"preference": PAIRS}, reference=base)
    insight._SCORES.clear()
    loaded = observe(policy, tmp_path / "o2", probes=[], evals={"preference": PAIRS}, reference=base)
    for result in (kept, loaded):
        pref = result["eval"]["preference"]
        assert pref["reference"] == "base" and pref["n"] == 3
        assert pref["implicit_accuracy"] == expected["accuracy"]
        assert pref["implicit_margin"] == pytest.approx(expected["margin"], abs=1e-5)
    assert kept["eval"]["preference"]["implicit_margin"] != 0.0  # the two models really differ


def test_preference_accuracy_is_the_models_own_summed_and_per_token(tiny_model: Path, tmp_path: Path) -> None:
    """The headline preference numbers are measured at the base: swapping chosen and rejected
    mirrors them, and the per-token accuracy divides each answer's log-prob by its length."""
    model, tok = load_model(tiny_model, device="cpu"), load_tokenizer(tiny_model)
    scores, lengths = pair_scores(model, tok, PAIRS)
    assert lengths == [len(tokenize_pair(tok, r["prompt"], r[k], stop_token_ids(model, tok))[1])
                       for r in PAIRS for k in ("chosen", "rejected")]
    result = observe(tiny_model, tmp_path / "a", probes=[], evals={"preference": PAIRS})["eval"]["preference"]
    swapped = observe(tiny_model, tmp_path / "b", probes=[], evals={"preference": [
        {**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS]})["eval"]["preference"]
    means = [s / n for s, n in zip(scores, lengths, strict=True)]
    wins = sum(means[i] > means[i + 1] for i in range(0, len(means), 2)) / len(PAIRS)
    assert result["accuracy_per_token"] == pytest.approx(wins)
    for key in ("accuracy", "accuracy_per_token"):
        assert swapped[key] == pytest.approx(1.0 - result[key])
    assert result["margin"] == pytest.approx(-swapped["margin"], abs=1e-4)


def test_a_stage_is_compared_with_its_input_cached_or_loaded(tiny_model: Path, tmp_path: Path) -> None:
    """observe() compares a checkpoint's suite answers with its parent's: from this process's
    cache when the parent was observed, else by loading the parent once; both give the same."""
    from ladder import insight

    changed = load_model(tiny_model, device="cpu")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in changed.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    changed.save_pretrained(tmp_path / "changed")
    load_tokenizer(tiny_model).save_pretrained(tmp_path / "changed")
    base = Checkpoint(path=str(tiny_model), stage="base", fingerprint="base-fp-2")
    stage = Checkpoint(path=str(tmp_path / "changed"), stage="sft", fingerprint="sft-fp-2", parent=base)
    evals = {"behaviour": {"suites": ["instructions", "safety"], "limit": 6}}

    insight._RUNS.clear()
    first = observe(base, tmp_path / "b", probes=[], evals=evals, settings=SETTINGS)
    assert "regressions" not in first and len(insight._RUNS) == 1
    cached = observe(stage, tmp_path / "s1", probes=[], evals=evals, settings=SETTINGS)
    insight._RUNS.clear()
    loaded = observe(stage, tmp_path / "s2", probes=[], evals=evals, settings=SETTINGS)
    assert len(insight._RUNS) == 2  # the parent was loaded and answered, then kept
    assert isinstance(cached["regressions"], list) and cached["regressions"] == loaded["regressions"]
    assert cached["behaviour"] == loaded["behaviour"]
    # The verdict is the paired test on the two files' items.
    from ladder.evals import find_regressions

    def outcomes(path: Path) -> dict[str, dict[str, bool]]:
        out: dict[str, dict[str, bool]] = {}
        for line in (path / "behaviour.jsonl").read_text("utf-8").splitlines():
            row = json.loads(line)
            out.setdefault(row["metric"], {})[row["id"]] = row["good"]
        return out

    assert cached["regressions"] == find_regressions(outcomes(tmp_path / "b"), outcomes(tmp_path / "s1"),
                                                     compared_to="base")


def test_generation_precision_loads_every_model_of_an_observation_in_one_dtype(tiny_model: Path, tmp_path: Path) -> None:
    """``generation.precision: bf16`` loads the observed checkpoint, the parent it is compared with
    and the DPO reference in bf16 where this CPU has native bf16, in fp32 where it has not."""
    import attrs

    from ladder import insight
    from ladder.training.models import cpu_has_native_bf16, inference_dtype

    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert inference_dtype("bf16", "cpu") == expected
    assert inference_dtype("fp32", "cpu") == inference_dtype("auto", "cpu") == torch.float32
    settings = attrs.evolve(SETTINGS, precision="bf16")
    base = Checkpoint(path=str(tiny_model), stage="base", fingerprint="base-fp-bf16")
    stage = Checkpoint(path=str(tiny_model), stage="sft", fingerprint="sft-fp-bf16", parent=base)
    evals = {"preference": PAIRS, "behaviour": {"suites": ["arithmetic"], "limit": 4}}
    insight._RUNS.clear()
    insight._SCORES.clear()
    result = observe(stage, tmp_path / "s", probes=[], evals=evals, settings=settings, reference=base)
    # Neither the parent nor the reference was observed in this process: both were loaded, in
    # the same dtype as the checkpoint, and are cached under it.
    assert {key[1] for key in insight._SCORES} == {str(expected)}
    assert len(insight._RUNS) == 2 and result["regressions"] == []  # the same weights: nothing worse
    assert result["eval"]["preference"]["implicit_accuracy"] is not None
