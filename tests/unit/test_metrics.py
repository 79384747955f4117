"""Behaviour metrics, checked against examples worked out by hand."""

from __future__ import annotations

import pytest

from ladder.generation import Generation
from ladder.metrics import behaviour, mean_answer_tokens, repetition, stop_rate


def gen(text: str, num_tokens: int, stopped: bool) -> Generation:
    return Generation(text, num_tokens, stopped, "stop" if stopped else "length")


def test_stop_rate_is_the_share_that_stopped() -> None:
    gens = [gen("a", 3, True), gen("b", 16, False), gen("c", 2, True), gen("d", 16, False)]
    assert stop_rate(gens) == 0.5
    assert stop_rate([gen("a", 1, True)]) == 1.0
    assert stop_rate([gen("a", 16, False)]) == 0.0


def test_mean_answer_tokens() -> None:
    assert mean_answer_tokens([gen("a", 3, True), gen("b", 16, False), gen("c", 2, True)]) == 7.0


def test_empty_lists_give_zero() -> None:
    assert stop_rate([]) == 0.0
    assert mean_answer_tokens([]) == 0.0
    assert behaviour([]) == {"mean_answer_tokens": 0.0, "stop_rate": 0.0, "repetition": 0.0}


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        # 4 trigrams, all distinct.
        ("the cat sat on the", 3, 0.0),
        # "a b c a b c a": trigrams abc bca cab abc bca -> 5 total, 3 unique.
        ("a b c a b c a", 3, 2 / 5),
        # 8 words "x" -> 6 trigrams, 1 unique.
        ("x x x x x x x x", 3, 5 / 6),
        # Lower-cased before counting: "Go go GO go" -> bigrams (go go) x3, 1 unique.
        ("Go go GO go", 2, 2 / 3),
        # Unigrams: "to be or not to be" -> 6 total, 4 unique.
        ("to be or not to be", 1, 2 / 6),
        # Fewer than n words.
        ("hello world", 3, 0.0),
        ("", 3, 0.0),
        # Whitespace of any kind separates words.
        # "a b a b a b": bigrams ab ba ab ba ab -> 5 total, 2 unique.
        ("a b\na b\ta b", 2, 3 / 5),
    ],
)
def test_repetition_hand_checked(text: str, n: int, expected: float) -> None:
    assert repetition(text, n=n) == pytest.approx(expected)


def test_repetition_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="n must be"):
        repetition("a b c", n=0)


def test_behaviour_averages_repetition_over_answers() -> None:
    gens = [gen("x x x x x x x x", 8, False), gen("the cat sat on the", 5, True)]
    assert behaviour(gens) == pytest.approx(
        {"mean_answer_tokens": 6.5, "stop_rate": 0.5, "repetition": (5 / 6 + 0.0) / 2}
    )
