"""Preference rows: every accepted shape, every problem (with its row and field), held-out split."""

from __future__ import annotations

import pytest

from ladder.data.preference import (
    MIN_ROWS_FOR_HELDOUT,
    heldout_count,
    normalize_preference_rows,
    split_heldout,
)
from ladder.errors import DataError

USER = {"role": "user", "content": "Name a fruit."}


def one(row: dict) -> dict:
    rows, problems = normalize_preference_rows([row], "pairs.jsonl")
    assert not problems, [str(p) for p in problems]
    return rows[0]


def problem(row: dict, index: int = 0) -> DataError:
    rows = [{"prompt": "ok", "chosen": "a", "rejected": "b"}] * index + [row]
    normalised, problems = normalize_preference_rows(rows, "pairs.jsonl")
    assert len(problems) == 1, [str(p) for p in problems]
    assert len(normalised) == index  # the bad row is left out, the good ones kept
    err = problems[0]
    assert err.source == "pairs.jsonl" and err.row == index
    return err


# --------------------------------------------------------------------------- accepted shapes


def test_explicit_strings() -> None:
    assert one({"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Rock."}) == {
        "prompt": [USER],
        "chosen": "Apple.",
        "rejected": "Rock.",
    }


def test_explicit_conversational_trl_format() -> None:
    row = {
        "prompt": [{"role": "system", "content": "Be brief."}, USER],
        "chosen": [{"role": "assistant", "content": "Apple."}],
        "rejected": [{"role": "assistant", "content": "Rock."}],
    }
    assert one(row) == {"prompt": [{"role": "system", "content": "Be brief."}, USER], "chosen": "Apple.",
                        "rejected": "Rock."}


def test_question_is_accepted_for_prompt_with_system() -> None:
    # Intel/orca_dpo_pairs: system, question, chosen, rejected
    row = {"system": "Be brief.", "question": "Name a fruit.", "chosen": "Apple.", "rejected": "Rock."}
    assert one(row)["prompt"] == [{"role": "system", "content": "Be brief."}, USER]


def test_implicit_prompt_is_the_shared_prefix() -> None:
    history = [USER, {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"}]
    row = {
        "chosen": [*history, {"role": "assistant", "content": "Pear."}],
        "rejected": [*history, {"role": "assistant", "content": "No."}],
    }
    assert one(row) == {"prompt": history, "chosen": "Pear.", "rejected": "No."}


def test_llama_factory_ranking_format() -> None:
    # llamafactory/DPO-En-Zh-20k: conversations (ShareGPT, ends with the human turn) +
    # chosen/rejected as single {"from": "gpt", "value": ...} messages
    row = {
        "conversations": [
            {"from": "human", "value": "Name a fruit."},
            {"from": "gpt", "value": "Apple."},
            {"from": "human", "value": "Another?"},
        ],
        "chosen": {"from": "gpt", "value": "Pear."},
        "rejected": {"from": "gpt", "value": "No."},
    }
    assert one(row) == {
        "prompt": [USER, {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"}],
        "chosen": "Pear.",
        "rejected": "No.",
    }


def test_llama_factory_with_system_and_string_answers() -> None:
    # older revisions of the dataset stored chosen/rejected as plain strings; "system" is optional
    row = {
        "system": "Be brief.",
        "conversations": [{"from": "human", "value": "Name a fruit."}],
        "chosen": "Apple.",
        "rejected": "Rock.",
    }
    assert one(row)["prompt"] == [{"role": "system", "content": "Be brief."}, USER]
    # an empty system string means "no system prompt"
    assert one({**row, "system": ""})["prompt"] == [USER]


def test_system_is_not_added_twice() -> None:
    row = {"system": "Other.", "prompt": [{"role": "system", "content": "Be brief."}, USER], "chosen": "A",
           "rejected": "B"}
    assert one(row)["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert len(one(row)["prompt"]) == 2


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "Hi", "rejected": "B"}, "chosen", "missing"),
        ({"prompt": "Hi", "chosen": "A"}, "rejected", "missing"),
        ({"chosen": "A", "rejected": "B"}, "prompt", "missing"),
        ({"conversations": [{"from": "human", "value": "Hi"}], "rejected": {"from": "gpt", "value": "B"}},
         "chosen", "missing"),
        ({"prompt": "Hi", "chosen": 3, "rejected": "B"}, "chosen", "expected a string"),
        ({"prompt": "Hi", "chosen": "A", "rejected": [{"role": "assistant", "content": 7}]},
         "rejected[0].content", "expected string content"),
        ({"conversations": [{"from": "human", "value": None}], "chosen": "A", "rejected": "B"},
         "conversations[0].value", "missing"),
        ({"conversations": [{"from": "human", "value": ["x"]}], "chosen": "A", "rejected": "B"},
         "conversations[0].value", "expected string content"),
        ({"conversations": [{"from": "robot", "value": "Hi"}], "chosen": "A", "rejected": "B"},
         "conversations[0].from", "unknown speaker"),
        ({"prompt": [{"role": "wizard", "content": "Hi"}], "chosen": "A", "rejected": "B"},
         "prompt[0].role", "unknown role"),
        ({"prompt": "Hi", "chosen": "   ", "rejected": "B"}, "chosen", "empty answer"),
        ({"prompt": "Hi", "chosen": "A", "rejected": ""}, "rejected", "empty answer"),
        ({"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}, "chosen", "identical chosen and rejected"),
        ({"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "X"},
          "rejected": {"from": "gpt", "value": "X"}}, "chosen", "identical chosen and rejected"),
        ({"chosen": [USER, {"role": "assistant", "content": "A"}], "rejected": [USER, {"role": "assistant",
          "content": "A"}]}, "chosen", "identical chosen and rejected"),
        ({"prompt": [{"role": "system", "content": "Be brief."}], "chosen": "A", "rejected": "B"},
         "prompt", "no user turn"),
        ({"conversations": [{"from": "system", "value": "S"}], "chosen": "A", "rejected": "B"},
         "conversations", "no user turn"),
        ({"prompt": [USER, {"role": "assistant", "content": "A"}], "chosen": "B", "rejected": "C"},
         "prompt", "ends with an assistant turn"),
        ({"prompt": "  ", "chosen": "A", "rejected": "B"}, "prompt", "empty prompt"),
        ({"chosen": [USER, {"role": "user", "content": "A"}], "rejected": [USER, {"role": "assistant",
          "content": "B"}]}, "chosen[1]", "last differing message must be the assistant's"),
        ({"chosen": [USER, {"role": "assistant", "content": "A"}, {"role": "user", "content": "more"}],
          "rejected": [USER, {"role": "assistant", "content": "B"}]}, "chosen", "exactly one assistant message"),
        ({"prompt": "Hi", "chosen": [{"role": "assistant", "content": "A"}, {"role": "assistant", "content": "B"}],
          "rejected": "C"}, "chosen", "single assistant message"),
        ({"prompt": "Hi", "chosen": {"from": "human", "value": "A"}, "rejected": "C"}, "chosen",
         "must be an assistant message"),
        ({"prompt": "Hi", "chosen": "A", "rejected": "B", "system": 5}, "system", "expected a string"),
    ],
)
def test_problem_names_row_and_field(row: dict, field: str, words: str) -> None:
    err = problem(row, index=2)
    assert err.field == field, str(err)
    assert words in str(err)
    assert str(err).startswith(f"pairs.jsonl, row 2, field {field!r}")


def test_unrecognised_row_lists_the_shapes() -> None:
    err = problem({"text": "hello"})
    assert err.field is None
    assert "unrecognised preference row" in str(err) and "conversations" in str(err)


def test_identical_pair_message_says_what_to_do() -> None:
    err = problem({"prompt": "Hi", "chosen": "Same.", "rejected": " Same. "})
    assert str(err).endswith("identical chosen and rejected: the pair teaches nothing; remove the row")


def test_all_problems_are_reported_at_once() -> None:
    rows = [
        {"prompt": "Hi", "chosen": "A", "rejected": "A"},
        {"prompt": "Hi", "chosen": "A", "rejected": "B"},
        {"prompt": "Hi", "chosen": "A"},
        "not a dict",
    ]
    normalised, problems = normalize_preference_rows(rows, "pairs.jsonl")
    assert len(normalised) == 1
    assert [(p.row, p.field) for p in problems] == [(0, "chosen"), (2, "rejected"), (3, None)]


# --------------------------------------------------------------------------- held-out split


def test_split_is_deterministic_and_a_partition() -> None:
    rows = [{"i": i} for i in range(100)]
    train, held = split_heldout(rows, 0.1, seed=3)
    assert (train, held) == split_heldout(rows, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90
    assert sorted(r["i"] for r in train + held) == list(range(100))
    # both parts keep the original order
    assert [r["i"] for r in train] == sorted(r["i"] for r in train)
    assert [r["i"] for r in held] == sorted(r["i"] for r in held)
    # another seed holds out other rows
    assert split_heldout(rows, 0.1, seed=4)[1] != held


def test_split_holds_out_at_least_one_pair_from_twenty_rows() -> None:
    assert heldout_count(MIN_ROWS_FOR_HELDOUT, 0.01) == 1
    assert heldout_count(MIN_ROWS_FOR_HELDOUT - 1, 0.01) == 0
    assert heldout_count(1000, 0.05) == 50
    assert heldout_count(1000, 0.0) == 0
    _, held = split_heldout(list(range(20)), 0.05, seed=0)
    assert len(held) == 1


def test_split_never_holds_out_everything() -> None:
    train, held = split_heldout([1, 2], 0.9, seed=0)
    assert len(train) == 1 and len(held) == 1
    assert split_heldout([1], 0.5, seed=0) == ([1], [])


def test_split_rejects_a_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_heldout([1, 2, 3], 1.0, seed=0)


def test_a_system_column_the_prompt_overrides_is_counted() -> None:
    rows = [
        {"system": "Other.", "prompt": [{"role": "system", "content": "Be brief."}, USER], "chosen": "A",
         "rejected": "B"},
        {"system": "Be brief.", "prompt": [{"role": "system", "content": "Be brief."}, USER], "chosen": "A",
         "rejected": "B"},
    ]
    normalised, problems = normalize_preference_rows(rows, "pairs.jsonl")
    assert problems == []
    changed = normalised.checks.summary()["changed"]
    assert list(changed) == ["system_ignored"]  # the second row's system column says the same: no change
    assert [(r["row"], r["field"]) for r in changed["system_ignored"]["rows"]] == [(0, "system")]


def test_the_split_keeps_each_pairs_origin() -> None:
    rows = [{"prompt": f"Q{i}", "chosen": "A", "rejected": "B"} for i in range(30)]
    normalised, _ = normalize_preference_rows(rows, "pairs.jsonl")
    train, held = split_heldout(normalised, 0.1, seed=0)
    assert [o.row for o in held.origins] == [int(r["prompt"][0]["content"][1:]) for r in held]
    assert len(train.origins) == 27 and train.checks is normalised.checks
