"""Built-in rewards: edge-case tables, both completion shapes, and calls shaped like TRL's."""

from __future__ import annotations

import math
import pickle
import re
import sys
import types
from typing import Any

import pytest

from ladder.registry import rewards as registry
from ladder.rewards import (
    contains,
    exact_match,
    length_penalty,
    make_contains_reward,
    make_length_penalty,
    make_regex_reward,
    make_tag_format,
    multiple_choice,
    regex_match,
    required_columns,
    resolve_rewards,
    tag_format,
)
from ladder.rewards._common import parse_number


def conv(text: str) -> list[dict[str, str]]:
    """A conversational completion as TRL builds it."""
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------------------------------------
# exact_match

EXACT_MATCH_CASES = [
    # (completion, gold, expected, why)
    ("<answer>42</answer>", "42", 1.0, "plain tags"),
    ("<answer>42.0</answer>", "42", 1.0, "42.0 == 42"),
    ("<answer>42</answer>", "42.00", 1.0, "gold with trailing zeros"),
    ("<answer>1,000</answer>", "1000", 1.0, "thousands comma"),
    ("<answer>1000</answer>", "1,000", 1.0, "comma in the gold"),
    ("<answer>$5</answer>", "5", 1.0, "currency"),
    ("<answer>\\$5.00</answer>", "5", 1.0, "LaTeX-escaped currency"),
    ("<answer>5%</answer>", "5", 1.0, "percent sign is a unit"),
    ("<answer>0.05</answer>", "5%", 0.0, "percent is not divided by 100"),
    ("<answer>-3</answer>", "-3", 1.0, "negative"),
    ("<answer>\u22123</answer>", "-3", 1.0, "unicode minus"),
    ("<answer>3</answer>", "-3", 0.0, "sign matters"),
    ("<answer>3/4</answer>", "0.75", 1.0, "fraction equals decimal"),
    ("<answer>\\frac{3}{4}</answer>", "3/4", 1.0, "LaTeX fraction"),
    ("<answer>0.333</answer>", "1/3", 0.0, "no approximate equality"),
    ("<answer>42 apples</answer>", "42", 1.0, "number inside words in the tags"),
    ("<answer>The answer is 42.</answer>", "42", 1.0, "sentence in the tags"),
    ("Step: 6*7 = 42", "42", 1.0, "trailing number without tags"),
    ("It is 42. Check: 40 + 2", "42", 0.0, "last number, not the intended one"),
    ("<answer>41</answer> no wait, 42", "42", 0.0, "tags win over a later number"),
    ("<answer>1</answer> <answer>42</answer>", "42", 1.0, "the last block counts"),
    ("<answer><answer>42</answer></answer>", "42", 1.0, "nested tags: innermost block"),
    ("<answer></answer> 42", "42", 0.0, "empty tags do not fall back to the text"),
    ("<answer>42", "42", 1.0, "unclosed tag: trailing number"),
    ("<ANSWER>42</ANSWER>", "42", 1.0, "tags ignore case"),
    ("\\boxed{42}", "42", 1.0, "boxed"),
    ("work... #### 42", "42", 1.0, "GSM8K marker in the completion"),
    ("<answer>72</answer>", "Natalia sold 48/2 = 24 clips.\n#### 72", 1.0, "GSM8K gold"),
    ("no number here", "42", 0.0, "nothing to extract"),
    ("", "42", 0.0, "empty completion"),
    ("<answer>Paris</answer>", "paris", 1.0, "text: case"),
    ("<answer>  the   Eiffel Tower. </answer>", "The Eiffel Tower", 1.0, "text: spaces, period"),
    ("Thinking.\nThe answer is Paris.", "Paris", 1.0, "text: last line with prefix"),
    ("<answer>Lyon</answer>", "Paris", 0.0, "text: wrong"),
    ("<answer>Paris, France</answer>", "Paris", 0.0, "text: no partial credit"),
]


@pytest.mark.parametrize(
    "completion,gold,expected", [c[:3] for c in EXACT_MATCH_CASES], ids=[c[3] for c in EXACT_MATCH_CASES]
)
def test_exact_match_table(completion: str, gold: str, expected: float) -> None:
    assert exact_match([completion], answer=[gold]) == [expected]
    # The conversational shape scores the same.
    assert exact_match([conv(completion)], answer=[gold]) == [expected]


def test_exact_match_missing_gold_is_skipped_and_lists_accept_any() -> None:
    assert exact_match(["42", "42", "42"], answer=[None, "  ", ["41", "42"]]) == [None, None, 1.0]
    assert exact_match(["7"], answer=[7]) == [1.0]  # an int column


def test_exact_match_ignores_tool_messages() -> None:
    completion = [
        {"role": "assistant", "content": None, "tool_calls": [{"name": "calc"}]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "so it is 41"},
    ]
    assert exact_match([completion], answer=["42"]) == [0.0]


def test_exact_match_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        exact_match(["1", "2"], answer=["1"])


@pytest.mark.parametrize(
    "text,value",
    [("1,00", None), ("1.2.3", None), ("", None), ("abc", None), ("1/0", None), ("1e3", 1000), (".5", 0.5)],
)
def test_parse_number_edges(text: str, value: float | None) -> None:
    parsed = parse_number(text)
    assert (parsed is None) if value is None else (parsed == value)


# ---------------------------------------------------------------------------------------------
# tag_format

TAG_FORMAT_CASES = [
    ("<answer>42</answer>", 1.0, "just the block"),
    ("Reasoning first.\n<answer>42</answer>\n", 1.0, "reasoning before, whitespace after"),
    ("<think>hmm</think><answer>42</answer>", 1.0, "other tags before"),
    ("<answer></answer>", 0.0, "empty"),
    ("<answer>  \n </answer>", 0.0, "whitespace only"),
    ("<answer>1</answer><answer>2</answer>", 0.0, "two blocks"),
    ("<answer><answer>1</answer></answer>", 0.0, "nested"),
    ("<answer>1", 0.0, "unclosed"),
    ("</answer>1<answer>", 0.0, "closing before opening"),
    ("<answer>42</answer> and more text", 0.0, "text after the block"),
    ("42", 0.0, "no tags"),
    ("<Answer>42</ANSWER>", 1.0, "case-insensitive"),
]


@pytest.mark.parametrize("completion,expected", [c[:2] for c in TAG_FORMAT_CASES], ids=[c[2] for c in TAG_FORMAT_CASES])
def test_tag_format_table(completion: str, expected: float) -> None:
    assert tag_format([completion]) == [expected]
    assert tag_format([conv(completion)]) == [expected]


def test_make_tag_format_variants() -> None:
    lenient = make_tag_format(allow_trailing_text=True)
    assert lenient(["<answer>4</answer> done", "<answer></answer> x"]) == [1.0, 0.0]
    assert make_tag_format("code").__name__ == "code_format"
    assert make_tag_format("code")(["<code>x</code>", "<answer>x</answer>"]) == [1.0, 0.0]
    with pytest.raises(ValueError):
        make_tag_format("bad tag>")


# ---------------------------------------------------------------------------------------------
# multiple_choice

MULTIPLE_CHOICE_CASES = [
    ("<answer>B</answer>", "B", 1.0, "letter in tags"),
    ("<answer>(b)</answer>", "B", 0.0, "lowercase in parens is not a commitment"),
    ("<answer>b</answer>", "B", 1.0, "single lowercase letter in tags"),
    ("<answer>(B)</answer>", "B", 1.0, "parens"),
    ("<answer>B. Paris</answer>", "B", 1.0, "letter with its option text"),
    ("<answer>The answer is B</answer>", "B", 1.0, "phrase in tags"),
    ("<answer>A B C D</answer>", "A", 0.0, "every letter"),
    ("<answer>A/B</answer>", "A", 0.0, "two letters"),
    ("So the answer is (C).", "C", 1.0, "answer is (C)"),
    ("Answer: D", "D", 1.0, "Answer: D"),
    ("The correct option is A.", "A", 1.0, "correct option is A"),
    ("Option A is wrong; the answer is B.", "B", 1.0, "last phrase wins"),
    ("the answer is a cat", "A", 0.0, "lowercase article is not option A"),
    ("B", "B", 1.0, "bare letter"),
    ("I think it could be B or C", "B", 0.0, "no commitment"),
    ("<answer>C</answer>", "(c)", 1.0, "gold with parens, lowercase"),
    ("<answer>B</answer>", 1, 1.0, "MMLU integer gold (0-based)"),
    ("<answer>A</answer>", 1, 0.0, "MMLU integer gold, wrong"),
]


@pytest.mark.parametrize(
    "completion,gold,expected",
    [c[:3] for c in MULTIPLE_CHOICE_CASES],
    ids=[c[3] for c in MULTIPLE_CHOICE_CASES],
)
def test_multiple_choice_table(completion: str, gold: Any, expected: float) -> None:
    assert multiple_choice([completion], answer=[gold]) == [expected]
    assert multiple_choice([conv(completion)], answer=[gold]) == [expected]


def test_multiple_choice_unusable_gold_is_skipped() -> None:
    assert multiple_choice(["B", "B", "B"], answer=[None, "Paris", 12]) == [None, None, None]


# ---------------------------------------------------------------------------------------------
# text rewards


def test_length_penalty_default_and_factory() -> None:
    assert length_penalty(["x" * 1000, "x" * 1001, "x" * 1500, "x" * 2000, "x" * 9000]) == [
        0.0,
        pytest.approx(-0.001),
        -0.5,
        -1.0,
        -1.0,
    ]
    step = make_length_penalty(target=3, ramp=0, max_penalty=2.0, name="short")
    assert step.__name__ == "short"
    assert step([conv("abc"), conv("abcd")]) == [0.0, -2.0]
    tokens = make_length_penalty(target=2, ramp=2, unit="tokens")
    assert tokens(["ignored"] * 3, completion_ids=[[1], [1, 2, 3], [1] * 10]) == [0.0, -0.5, -1.0]
    with pytest.raises(ValueError, match="completion_ids"):
        tokens(["a"])
    for bad in ({"target": -1}, {"max_penalty": -1.0}, {"max_penalty": math.nan}, {"unit": "words"}):
        with pytest.raises(ValueError):
            make_length_penalty(**bad)


def test_regex_match_column_and_factory() -> None:
    assert regex_match(
        ["order #123", "no digits", conv("ID: 7"), "x"], pattern=[r"#\d+", r"\d", r"^ID: \d$", None]
    ) == [1.0, 0.0, 1.0, None]
    with pytest.raises(ValueError, match="invalid regular expression"):
        regex_match(["x"], pattern=["("])
    only_yes = make_regex_reward(r"yes", flags=re.IGNORECASE, fullmatch=True, name="yes_only")
    assert only_yes(["YES", " yes\n", "yes!"]) == [1.0, 1.0, 0.0]
    assert only_yes.__name__ == "yes_only"
    with pytest.raises(ValueError):
        make_regex_reward("[")


def test_contains_keywords_answer_and_modes() -> None:
    assert contains(
        ["The capital is Paris", "paris!", "Lyon", "anything"],
        keywords=[["Paris", "capital"], "PARIS", ["Paris"], []],
    ) == [1.0, 1.0, 0.0, None]
    # word boundaries: "4" is not in "14"; keyword ending in a symbol still matches
    assert contains(["total 14", "total 4.", "I use C++ daily"], answer=["#### 4", "#### 4", "c++"]) == [
        0.0,
        1.0,
        1.0,
    ]
    fraction = make_contains_reward(["a", "b", "c", "d"], mode="fraction")
    assert fraction(["a b", "a b c d", "none"]) == [0.5, 1.0, 0.0]
    assert make_contains_reward(["x", "y"], mode="any")(["y", "z"]) == [1.0, 0.0]
    assert make_contains_reward(["Cat"], case_sensitive=True)(["cat", "Cat"]) == [0.0, 1.0]
    assert make_contains_reward(["cat"], whole_word=False)(["concatenate"]) == [1.0]
    with pytest.raises(ValueError, match="keywords"):
        contains(["x"])
    with pytest.raises(ValueError):
        make_contains_reward(mode="most")


def test_factories_pickle_and_keep_names() -> None:
    # TRL may forward rewards to a spawned worker process: factories must pickle.
    for reward in (
        make_tag_format("x"),
        make_length_penalty(5, name="len5"),
        make_regex_reward("a", name="has_a"),
        make_contains_reward(["a"], name="has_a_word"),
    ):
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == reward.__name__
        assert clone(["a"]) == reward(["a"])


def test_required_columns_of_builtins() -> None:
    expected = {
        "exact_match": ["answer"],
        "multiple_choice": ["answer"],
        "tag_format": [],
        "length_penalty": [],
        "regex_match": ["pattern"],
        "contains": [],
        "python_tests": ["tests"],
    }
    assert {name: required_columns(registry.get(name)) for name in expected} == expected


# ---------------------------------------------------------------------------------------------
# called exactly as TRL calls them


def call_like_trl(
    reward_func: Any, inputs: list[dict[str, Any]], prompts: list[Any], completions: list[Any]
) -> list[float]:
    """A line-by-line replica of the synchronous branch of GRPOTrainer._calculate_rewards
    (trl 1.16), minus torch: same keyword arguments, None -> NaN, length check."""
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = types.SimpleNamespace(global_step=3)
    extra: dict[str, list[Any]] = {}
    reward_kwargs["log_extra"] = lambda column, values: extra.setdefault(column, []).extend(values)
    reward_kwargs["log_metric"] = lambda name, value: None
    completion_ids_list = [[1] * len(str(c)) for c in completions]
    output_reward_func = reward_func(
        prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs
    )
    output_reward_func = [reward if reward is not None else math.nan for reward in output_reward_func]
    assert len(output_reward_func) == len(prompts)
    return [float(r) for r in output_reward_func]  # what torch.tensor(..., float32) needs


ROWS = [
    {
        "prompt": "What is 6*7?",
        "answer": "#### 42",
        "pattern": r"\b42\b",
        "keywords": ["42"],
        "tests": "assert x == 42",
    },
    {"prompt": "Pick: (A) cat (B) dog", "answer": "B", "pattern": r"dog", "keywords": "dog", "tests": "assert x == 1"},
]
GOOD = ["<answer>42</answer>", "<answer>B</answer>"]
CODE = ["```python\nx = 42\n```", "```python\nx = 2\n```"]


def _builtin_names() -> list[str]:
    """The rewards ladder's own distribution registers (installed plugins add their own)."""
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group="ladder.rewards") if ep.dist and ep.dist.name == "ladder")


@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
@pytest.mark.parametrize("name", _builtin_names())
def test_every_builtin_drops_into_trl(name: str, conversational: bool) -> None:
    if name == "python_tests":
        from tests.unit.sandbox_support import require_sandbox

        require_sandbox()
    elif name == "math_verify":
        pytest.importorskip("math_verify")  # the optional `math` extra
    reward = registry.get(name)
    texts = CODE if name == "python_tests" else GOOD
    if conversational:
        prompts: list[Any] = [[{"role": "user", "content": row["prompt"]}] for row in ROWS]
        completions: list[Any] = [conv(t) for t in texts]
    else:
        prompts = [row["prompt"] for row in ROWS]
        completions = list(texts)
    inputs = [dict(row, prompt=p) for row, p in zip(ROWS, prompts)]
    scores = call_like_trl(reward, inputs, prompts, completions)
    expected = {
        "exact_match": [1.0, 1.0],
        "multiple_choice": [math.nan, 1.0],  # "#### 42" is not an option letter: skipped
        "tag_format": [1.0, 1.0],
        "length_penalty": [0.0, 0.0],
        "regex_match": [1.0, 0.0],
        "contains": [1.0, 0.0],
        "python_tests": [1.0, 0.0],
        "math_verify": [1.0, 1.0],  # 42 = 42; "B" = "B" as symbols
    }[name]
    assert scores == pytest.approx(expected, nan_ok=True)
    # the checked wrapper behaves identically under the same call
    (checked,), _ = resolve_rewards([name])
    assert call_like_trl(checked, inputs, prompts, completions) == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow
def test_real_trl_calculate_rewards() -> None:
    """The real GRPOTrainer._calculate_rewards on a stand-in trainer (imports trl: slow)."""
    torch = pytest.importorskip("torch")
    from trl import GRPOTrainer

    funcs, _ = resolve_rewards({"exact_match": 1.0, "tag_format": 0.1, "multiple_choice": 1.0})
    trainer = types.SimpleNamespace(
        accelerator=types.SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        reward_funcs=funcs,
        reward_processing_classes=[None] * len(funcs),
        reward_func_names=[f.__name__ for f in funcs],
        state=types.SimpleNamespace(global_step=0),
        args=types.SimpleNamespace(report_to=[]),
        _log_completion_extra=lambda column, values: None,
        _log_metric=lambda name, value: None,
        environments=None,
    )
    inputs = [{"prompt": [{"role": "user", "content": "q"}], "answer": a} for a in ("#### 4", "B")]
    prompts = [row["prompt"] for row in inputs]
    completions = [conv("<answer>4</answer>"), conv("<answer>C</answer> extra")]
    out = GRPOTrainer._calculate_rewards(trainer, inputs, prompts, completions, [[1], [2]])
    assert out.shape == (2, 3)
    assert out[0].tolist()[:2] == [1.0, 1.0] and math.isnan(out[0, 2].item())
    assert out[1].tolist() == [0.0, 0.0, 0.0]
    assert "trl" in sys.modules
