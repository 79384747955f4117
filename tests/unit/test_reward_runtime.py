"""The reward runtime: name resolution, the checked wrapper, pre-flight helpers."""

from __future__ import annotations

import asyncio
import functools
import math
import pickle
import threading
import time
from typing import Any

import pytest

from ladder.errors import ConfigError, RewardError, UnknownComponentError
from ladder.rewards import (
    CheckedReward,
    check_reward_on_sample,
    checked_reward,
    contains,
    exact_match,
    required_columns,
    resolve_rewards,
    tag_format,
)


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------------------------
# resolve_rewards


def test_resolve_mapping_list_pairs_and_callables() -> None:
    funcs, weights = resolve_rewards({"exact_match": 1.0, "tag_format": 0.1})
    assert [f.__name__ for f in funcs] == ["exact_match", "tag_format"]
    assert weights == [1.0, 0.1]
    assert all(isinstance(f, CheckedReward) for f in funcs)
    assert funcs[0].fn is exact_match

    def my_reward(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0] * len(completions)

    funcs, weights = resolve_rewards(["tag_format", my_reward, ("contains", 2)])
    assert [f.__name__ for f in funcs] == ["tag_format", "my_reward", "contains"]
    assert weights == [1.0, 1.0, 2.0]

    funcs, weights = resolve_rewards("exact_match", check=False)
    assert funcs == [exact_match] and weights == [1.0]
    funcs, _ = resolve_rewards({my_reward: 0.5})
    assert funcs[0].__name__ == "my_reward"


def test_resolve_unknown_name_lists_known() -> None:
    with pytest.raises(UnknownComponentError) as info:
        resolve_rewards({"exact_mtach": 1.0})
    message = str(info.value)
    assert "exact_mtach" in message and "exact_match" in message and "tag_format" in message


@pytest.mark.parametrize(
    "spec,match",
    [
        ({}, "no rewards"),
        ([], "no rewards"),
        ({"exact_match": "heavy"}, "weight"),
        ({"exact_match": math.inf}, "weight"),
        ({"exact_match": True}, "weight"),
        (["exact_match", "exact_match"], "listed twice"),
        ([42], "registered name or a callable"),
        (3.5, "mapping of name to weight"),
    ],
)
def test_resolve_rejects_malformed_specs(spec: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_rewards(spec)


def test_resolve_rejects_non_callable_registration() -> None:
    from ladder.registry import rewards

    rewards.register("not_a_function", 42)
    try:
        with pytest.raises(ConfigError, match="not_a_function.*not a reward function"):
            resolve_rewards(["not_a_function"])
    finally:
        rewards.unregister("not_a_function")


# --------------------------------------------------------------------------------------------
# checked_reward


def test_checked_passes_through_and_keeps_none() -> None:
    def partial_none(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float | None]:
        return [None if a is None else 1 for a in answer]  # ints are fine

    checked = checked_reward(partial_none, timeout_s=5)
    assert checked.__name__ == "partial_none"
    assert checked(["a", "b"], answer=[None, "x"]) == [None, 1.0]
    assert required_columns(checked) == ["answer"]  # seen through the wrapper


def test_checked_reward_that_raises_names_reward_and_sample() -> None:
    def picky(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
        out = []
        for c, a in zip(completions, answer):
            if "boom" in c:
                raise KeyError("no such thing")
            out.append(1.0)
        return out

    checked = checked_reward(picky, "picky_reward")
    with pytest.raises(RewardError) as info:
        checked(["fine", "fine too", "this goes boom"], answer=["1", "2", "3"], trainer_state=object())
    message = str(info.value)
    assert "picky_reward" in message
    assert "sample 2 of 3" in message
    assert "this goes boom" in message and "answer='3'" in message
    assert "KeyError" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_checked_batch_only_failure() -> None:
    def batch_size_one_only(completions: list[Any], **kwargs: Any) -> list[float]:
        if len(completions) > 1:
            raise RuntimeError("batched call broken")
        return [0.0]

    with pytest.raises(RewardError, match=r"'batch_size_one_only'.*batch of 2, though on no single sample"):
        checked_reward(batch_size_one_only)(["a", "b"])


def test_checked_wrong_length() -> None:
    def short(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0]

    with pytest.raises(RewardError, match=r"'short' returned 1 rewards for 3 completions"):
        checked_reward(short)(["a", "b", "c"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_checked_non_finite_names_sample(bad: float) -> None:
    def flaky(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0, bad, 0.0]

    with pytest.raises(RewardError) as info:
        checked_reward(flaky, "flaky")(["ok", conv("the second one"), "ok"])
    message = str(info.value)
    assert "'flaky'" in message and "sample 1" in message and "the second one" in message
    assert "finite" in message


@pytest.mark.parametrize("result", ["1.0", 1.0, None, {"a": 1}, ["x", 1.0]])
def test_checked_rejects_non_lists_and_non_numbers(result: Any) -> None:
    def weird(completions: list[Any], **kwargs: Any) -> Any:
        return result

    with pytest.raises(RewardError, match="'weird'"):
        checked_reward(weird)(["a", "b"])


def test_checked_all_none_is_an_error() -> None:
    def nothing(completions: list[Any], **kwargs: Any) -> list[None]:
        return [None] * len(completions)

    with pytest.raises(RewardError, match=r"'nothing' returned None for all 2 completions"):
        checked_reward(nothing)(["a", "b"])
    assert checked_reward(nothing)([]) == []  # an empty batch is not "all None"


def test_checked_timeout_names_reward_and_returns_promptly() -> None:
    release = threading.Event()

    def hangs(completions: list[Any], **kwargs: Any) -> list[float]:
        release.wait(30)
        return [1.0] * len(completions)

    checked = checked_reward(hangs, "hanging_reward", timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(RewardError) as info:
        checked([conv("slow sample")])
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "hanging_reward" in message and "0.2 s" in message and "slow sample" in message
    release.set()  # let the abandoned thread finish


def test_checked_awaits_async_rewards() -> None:
    async def later(completions: list[Any], **kwargs: Any) -> list[float]:
        await asyncio.sleep(0)
        return [0.5] * len(completions)

    assert checked_reward(later)(["a"]) == [0.5]
    assert checked_reward(later, timeout_s=None)(["a"]) == [0.5]


def test_checked_calls_with_completions_keyword_like_trl() -> None:
    def prompts_first(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        return [float(p == c) for p, c in zip(prompts, completions)]

    assert checked_reward(prompts_first)(completions=["a", "b"], prompts=["a", "x"]) == [1.0, 0.0]


def test_checked_wrapper_pickles_and_rejects_bad_settings() -> None:
    clone = pickle.loads(pickle.dumps(checked_reward(exact_match, timeout_s=3)))
    assert clone.__name__ == "exact_match" and clone(["<answer>1</answer>"], answer=["1"]) == [1.0]
    with pytest.raises(ConfigError):
        checked_reward(exact_match, timeout_s=0)
    with pytest.raises(ConfigError):
        CheckedReward("not callable", "x")  # type: ignore[arg-type]
    rewrapped = checked_reward(checked_reward(exact_match), "renamed")
    assert rewrapped.fn is exact_match and rewrapped.__name__ == "renamed"


# --------------------------------------------------------------------------------------------
# required_columns / check_reward_on_sample


def test_required_columns_reads_signatures() -> None:
    def needs(
        completions: Any,
        answer: Any,
        *,
        tests: Any,
        optional: Any = None,
        prompts: Any = None,
        trainer_state: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        return []

    class Callable:
        def __call__(self, completions: Any, solution: Any, **kwargs: Any) -> list[float]:
            return []

    assert required_columns(needs) == ["answer", "tests"]
    assert required_columns(Callable()) == ["solution"]
    assert required_columns(functools.partial(needs, answer=None)) == ["tests"]
    assert required_columns(tag_format) == []


def test_check_on_sample_accepts_good_rows_in_both_shapes() -> None:
    rows = [{"prompt": "1+1?", "answer": "#### 2"}, {"prompt": "2+2?", "answer": "4"}]
    # the default sample completions are the reference answers in tags: full credit
    assert check_reward_on_sample(exact_match, "exact_match", rows) == [1.0, 1.0]
    conversational = [{"prompt": [{"role": "user", "content": "1+1?"}], "answer": "2"}]
    assert check_reward_on_sample(exact_match, "exact_match", conversational) == [1.0]
    assert check_reward_on_sample(tag_format, "tag_format", rows) == [1.0, 1.0]
    assert check_reward_on_sample(exact_match, "exact_match", rows, completions=["1", "4"]) == [0.0, 1.0]
    assert check_reward_on_sample(exact_match, "exact_match", []) == []
    # a column that clashes with TRL's own arguments is not passed twice (the stage reports it)
    clashing = [{"prompt": "q", "answer": "1", "completions": "x", "trainer_state": 0}]
    assert check_reward_on_sample(exact_match, "exact_match", clashing) == [1.0]


def test_check_on_sample_reports_missing_columns() -> None:
    with pytest.raises(RewardError) as info:
        check_reward_on_sample(exact_match, "exact_match", [{"prompt": "q", "solution": "2"}])
    message = str(info.value)
    assert "'exact_match'" in message and "'answer'" in message and "prompt, solution" in message


def test_check_on_sample_reports_bad_signature_and_failures() -> None:
    def no_kwargs(completions: list[Any], answer: list[Any]) -> list[float]:
        return [1.0] * len(completions)

    with pytest.raises(RewardError) as info:
        check_reward_on_sample(no_kwargs, "strict", [{"prompt": "q"}])
    message = str(info.value)  # both problems in one message
    assert "'strict'" in message and "**kwargs" in message and "'answer'" in message

    def explodes(completions: list[Any], **kwargs: Any) -> list[float]:
        raise ValueError("bad data")

    with pytest.raises(RewardError, match=r"'explodes'.*bad data.*pre-flight"):
        check_reward_on_sample(explodes, "explodes", [{"prompt": "q", "answer": "1"}])

    # exact_match on rows whose answers are all blank gives no signal
    with pytest.raises(RewardError, match="None for all"):
        check_reward_on_sample(exact_match, "exact_match", [{"prompt": "q", "answer": ""}])

    # contains needs one of two optional columns: only a real call finds out
    with pytest.raises(RewardError, match=r"'contains'.*keywords"):
        check_reward_on_sample(checked_reward(contains), "contains", [{"prompt": "q"}])


def test_package_delegates_to_the_registry() -> None:
    import ladder
    import ladder.rewards

    # after a submodule import, ladder.rewards is this package, not the Registry object;
    # the registry's everyday calls still work through it
    assert ladder.rewards.get("exact_match") is exact_match
    assert {"exact_match", "tag_format", "python_tests"} <= set(ladder.rewards.names())
    assert "exact_match" in [e.name for e in ladder.rewards.entries()]

    def shout(completions: list[Any], **kwargs: Any) -> list[float]:
        return [float(str(c).isupper()) for c in completions]

    ladder.rewards.register("shout", shout)
    try:
        funcs, _ = resolve_rewards(["shout"])
        assert funcs[0](["HI", "hi"]) == [1.0, 0.0]
    finally:
        ladder.rewards.unregister("shout")
    with pytest.raises(UnknownComponentError):
        ladder.rewards.get("shout")
