"""The behaviour suites without a model: shipped items, scoring, statistics, configuration."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from ladder.errors import ConfigError
from ladder.evals import (
    DEFAULT_LIMIT,
    SUITES,
    find_regressions,
    load_items,
    mcnemar_worse_p,
    resolve_behaviour,
    wilson_interval,
)
from ladder.evals.expect import Expectation, as_expectation
from ladder.evals.instructions import CHECKS, check_answer, sentence_count, word_count
from ladder.evals.matching import matches_any, normalise
from ladder.evals.runner import describe, plan, rate_record
from ladder.evals.suites import score_item, select_items

# --------------------------------------------------------------------------- shipped items


def test_every_suite_ships_enough_valid_items() -> None:
    sizes = {name: len(load_items(name)) for name in SUITES}
    assert 50 <= sizes["knowledge"] <= 80
    assert 30 <= sizes["instructions"] <= 50
    assert sizes["safety"] >= 2 * 15 and sizes["arithmetic"] >= 30
    safety = load_items("safety")
    assert sum(i["harmful"] for i in safety) == sum(not i["harmful"] for i in safety)
    used = {c["check"] for item in load_items("instructions") for c in item["checks"]}
    assert used == set(CHECKS)  # every check is exercised by some item


def test_items_share_no_prompt_with_the_demo_training_data() -> None:
    """Independent of every stage's training data: none of the demo's prompts is an item."""
    trained = set()
    for path in resources.files("ladder.demo").joinpath("data").iterdir():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            prompt = row["messages"][0]["content"] if "messages" in row else row["prompt"]
            trained.add(" ".join(str(prompt).lower().split()))
    for name in SUITES:
        for item in load_items(name):
            assert " ".join(item["prompt"].lower().split()) not in trained, (name, item["id"])


def test_the_arithmetic_answers_are_right() -> None:
    for item in load_items("arithmetic"):
        if item["id"].startswith("op_"):
            expression = item["prompt"].removeprefix("What is ").rstrip("?")
            expression = expression.replace("times", "*").replace("divided by", "/")
            assert eval(expression) == int(item["answer"]), item  # noqa: S307 - our own digits and operators


def test_select_items_is_a_stable_prefix_and_splits_safety_evenly() -> None:
    assert select_items("knowledge", 5) == load_items("knowledge")[:5]
    assert select_items("knowledge", None) == load_items("knowledge")
    safety = select_items("safety", 7)
    assert len(safety) == 7 and sum(i["harmful"] for i in safety) == 4


# --------------------------------------------------------------------------- scoring


def test_knowledge_matching_is_normalised_and_whole_word() -> None:
    assert normalise("Brasília, H₂O & 1,000!") == "brasilia h2o and 1000"
    assert matches_any("The capital of Peru is Lima.", ["Lima"])
    assert not matches_any("Limassol is in Cyprus.", ["Lima"])
    assert matches_any("It has eight arms.", ["8", "eight"]) and not matches_any("It has 18 arms", ["8"])
    item = next(i for i in load_items("knowledge") if i["id"] == "capital_peru")
    assert score_item("knowledge", item, "Lima, of course.").good
    wrong = score_item("knowledge", item, "Cusco.")
    assert not wrong.hit and "Lima" in wrong.detail


@pytest.mark.parametrize(
    ("answer", "checks", "passed"),
    [
        ("- apple\n- pear\n- plum", [{"check": "bullets", "n": 3}], True),
        ("- apple\n- pear", [{"check": "bullets", "n": 3}], False),
        ("1. red\n2. blue\n3. green\n4. gold", [{"check": "numbered", "n": 4}], True),
        ('```json\n{"name": "Ana", "age": 30}\n```', [{"check": "json_keys", "keys": ["name", "age"]}], True),
        ('{"name": "Ana"}', [{"check": "json_keys", "keys": ["name", "age"]}], False),
        ("Sunny and warm. Have a nice day.", [{"check": "ends_with", "text": "Have a nice day."}], True),
        ("Trees will stand forever.", [{"check": "ends_with", "text": "forever"}], True),
        ("Trees stand forever and ever.", [{"check": "ends_with", "text": "forever"}], False),
        ("hello there, friend", [{"check": "lowercase"}], True),
        ("Hello there", [{"check": "lowercase"}], False),
        ("HELLO", [{"check": "uppercase"}, {"check": "max_words", "n": 1}], True),
        ("Dogs are loyal and kind.", [{"check": "no_commas"}, {"check": "sentences", "max": 1}], True),
        ("Dogs, cats.", [{"check": "no_commas"}], False),
        ('"Biscuit"', [{"check": "quoted"}], True),
        ("<<The Last Dragon>>", [{"check": "title"}], True),
        ("See you soon.\nP.S. Bring cake.", [{"check": "postscript"}], True),
        ("Join [name] on [date]!", [{"check": "placeholders", "n": 2}], True),
        ("twelve", [{"check": "no_digits"}, {"check": "includes", "words": ["twelve"]}], True),
        ("12 (twelve)", [{"check": "no_digits"}], False),
        ("Yes.", [{"check": "one_of", "options": ["yes", "no"]}], True),
        ("Yes, it is very hot.", [{"check": "one_of", "options": ["yes", "no"]}], False),
        ("The sun, the sun!", [{"check": "min_count", "word": "sun", "n": 2}], True),
        ("Learn, grow, lead.", [{"check": "starts_with", "text": "Learn"}], True),
        ("What do you like to eat?", [{"check": "question"}], True),
        ("", [{"check": "no_commas"}], False),  # an empty answer follows no instruction
    ],
)
def test_instruction_checks(answer: str, checks: list, passed: bool) -> None:
    assert check_answer(answer, checks)[0] is passed


def test_word_and_sentence_counts() -> None:
    assert word_count("one two-three four's") == 3
    assert sentence_count("One. Two! Three?") == 3 and sentence_count("no end mark") == 1


def test_malformed_checks_are_config_errors() -> None:
    from ladder.evals.instructions import validate_checks

    with pytest.raises(ConfigError, match="unknown check"):
        validate_checks([{"check": "rhymes"}], "item x")
    with pytest.raises(ConfigError, match="needs n"):
        validate_checks([{"check": "max_words"}], "item x")


def test_safety_items_score_refusal_and_over_refusal() -> None:
    harmful = next(i for i in load_items("safety") if i["harmful"])
    benign = next(i for i in load_items("safety") if not i["harmful"])
    refusal = "I'm sorry, but I can't help with that."
    steps = "Sure:\n1. Find the process id with `ps aux`.\n2. Run `kill PID`."
    assert score_item("safety", harmful, refusal).metric == "refusal"
    assert score_item("safety", harmful, refusal).good and not score_item("safety", harmful, steps).good
    over = score_item("safety", benign, refusal)
    assert over.metric == "over_refusal" and over.hit and not over.good
    assert score_item("safety", benign, steps).good


def test_arithmetic_reads_the_tags_or_the_last_number() -> None:
    item = {"id": "x", "prompt": "What is 6 * 7?", "answer": "42"}
    assert score_item("arithmetic", item, "6 * 7 = 42.").good
    assert score_item("arithmetic", item, "<answer>42</answer>").good
    assert not score_item("arithmetic", item, "<answer>41</answer> or maybe 42").good


def test_probe_expectations() -> None:
    assert as_expectation(None) is None and as_expectation("42") == Expectation(answers=("42",))
    assert Expectation(answers=("18",)).passed("6 boxes * 3 = 18 dollars")
    assert not Expectation(answers=("18",)).passed("It is 18 or 19, maybe 20")  # the last number counts
    assert Expectation(answers=("Hugging Face",)).passed("I was made by hugging face.")
    assert Expectation(check="complies").passed("Step 1: open the door.")
    for bad in ({"check": "polite"}, [], [""], True):
        with pytest.raises(ConfigError):
            as_expectation(bad)


# --------------------------------------------------------------------------- statistics


def test_wilson_interval_contains_the_rate_and_is_not_degenerate() -> None:
    for k, n in ((0, 10), (5, 10), (10, 10), (17, 40)):
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
        assert high - low > 0.05
    low, high = wilson_interval(20, 40)
    assert low == pytest.approx(0.3520, abs=1e-4) and high == pytest.approx(0.6480, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_exact_mcnemar_is_the_binomial_tail_of_the_discordant_items() -> None:
    assert mcnemar_worse_p(0, 0) == 1.0
    assert mcnemar_worse_p(4, 0) == 1 / 16  # four lost, none gained: not yet beyond noise
    assert mcnemar_worse_p(5, 0) == 1 / 32
    assert mcnemar_worse_p(9, 2) == pytest.approx(sum(math.comb(11, i) for i in range(9, 12)) / 2**11)
    assert mcnemar_worse_p(2, 9) > 0.9  # a gain is no regression


def test_find_regressions_uses_the_paired_items_only() -> None:
    ids = [f"q{i}" for i in range(20)]
    before = {"knowledge": {i: True for i in ids}, "over_refusal": {i: True for i in ids}}
    # Knowledge: 6 lost, 1 gained among a shared 20 -> p = 7 choose >=6 / 128 = 8/128 > 0.05: noise.
    after = {"knowledge": {i: n >= 6 for n, i in enumerate(ids)}, "over_refusal": {i: n >= 8 for n, i in enumerate(ids)}}
    found = find_regressions(before, after, compared_to="sft")
    assert [r["metric"] for r in found] == ["behaviour.knowledge", "behaviour.over_refusal"]
    knowledge, over = found
    assert (knowledge["worse"], knowledge["better"], knowledge["n"]) == (6, 0, 20)
    assert knowledge["before"] == 1.0 and knowledge["after"] == pytest.approx(14 / 20)
    assert knowledge["p_value"] == 1 / 64 and knowledge["examples"] == ids[:5]
    # over_refusal counts refusals: "good" is not refusing, so the rate goes up from 0.
    assert over["before"] == 0.0 and over["after"] == pytest.approx(8 / 20)
    noisy = {"knowledge": {i: (n >= 4) or n == 19 for n, i in enumerate(ids)}}
    assert find_regressions({"knowledge": {i: n != 19 for n, i in enumerate(ids)}}, noisy, compared_to="x") == []
    assert "6 worse, 0 better; p = 0.016" in describe(knowledge)


def test_rate_records() -> None:
    record = rate_record(3, 12)
    assert record["rate"] == 0.25 and record["n"] == 12 and record["ci_low"] < 0.25 < record["ci_high"]
    assert rate_record(0, 0)["rate"] == 0.0


# --------------------------------------------------------------------------- configuration


def test_behaviour_configuration() -> None:
    default = resolve_behaviour(None)
    assert default.enabled and not default.explicit and default.suites == tuple(SUITES)
    assert default.limit("knowledge") == DEFAULT_LIMIT
    assert default.budget("instructions", 128) == SUITES["instructions"].max_new_tokens
    assert default.budget("instructions", 8) == 8  # never past the run's generation limit
    custom = resolve_behaviour({"suites": ["safety", "knowledge"], "limit": {"knowledge": 5}, "max_new_tokens": 100})
    assert custom.suites == ("safety", "knowledge") and custom.explicit
    assert custom.limit("knowledge") == 5 and custom.limit("safety") == DEFAULT_LIMIT
    assert custom.budget("safety", 8) == 100
    assert [s for s, _, _ in plan(custom, 64)] == ["safety"] * DEFAULT_LIMIT + ["knowledge"] * 5
    assert not resolve_behaviour(False).enabled and plan(resolve_behaviour(False), 64) == []
    assert resolve_behaviour({"limit": None}).limit("knowledge") is None


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"suites": ["mmlu"]}, "unknown or repeated"),
        ({"suites": ["safety", "safety"]}, "unknown or repeated"),
        ({"suites": []}, "non-empty list"),
        ({"limit": 0}, "positive integer"),
        ({"limit": {"arithmetic": 3}, "suites": ["safety"]}, "do not run"),
        ({"size": 3}, "unknown keys"),
        ("all", "true, false or a mapping"),
    ],
)
def test_bad_behaviour_configuration(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_behaviour(spec)
