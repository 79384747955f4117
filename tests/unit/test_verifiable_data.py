"""Verifiable-problem rows: GSM8K, prompt/answer and problem/solution shapes, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.data.loading import load_rows
from ladder.data.verifiable import DEFAULT_INSTRUCTION, normalize_verifiable_rows, verifiable_row
from ladder.errors import DataError

GSM8K_ROW = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}


def test_gsm8k_row_gold_is_after_hashes_and_solution_is_kept() -> None:
    rows, problems = normalize_verifiable_rows([GSM8K_ROW], "gsm8k")
    assert problems == []
    (row,) = rows
    assert row["answer"] == "72"
    assert row["solution"] == GSM8K_ROW["answer"]
    assert row["prompt"] == [
        {"role": "user", "content": GSM8K_ROW["question"] + "\n\n" + DEFAULT_INSTRUCTION},
    ]
    assert row["question"] == GSM8K_ROW["question"]  # other columns stay for custom rewards


def test_gsm8k_jsonl_file_loads_directly(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in [GSM8K_ROW, {"question": "1,000 + 1?", "answer": "x\n#### 1,001"}]) + "\n"
    )
    raw, label = load_rows(str(path))
    rows, problems = normalize_verifiable_rows(raw, label)
    assert problems == []
    assert [r["answer"] for r in rows] == ["72", "1001"]


def test_prompt_string_and_numeric_answer() -> None:
    rows, problems = normalize_verifiable_rows(
        [
            {"prompt": "What is 6*7?", "answer": 42},
            {"prompt": "Half of 3?", "answer": 1.5},
            {"prompt": "x", "answer": 7.0},
        ],
        "mem",
        instruction=None,
    )
    assert problems == []
    assert [r["answer"] for r in rows] == ["42", "1.5", "7"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 6*7?"}]


def test_prompt_messages_get_instruction_on_last_user_turn_and_system_prompt() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    row = verifiable_row(
        {"prompt": messages, "answer": "4", "difficulty": 1}, "mem", 0, system_prompt="You are careful."
    )
    assert row["prompt"][0] == {"role": "system", "content": "You are careful."}
    assert row["prompt"][1] == {"role": "user", "content": "Hi"}
    assert row["prompt"][-1] == {"role": "user", "content": "2+2?\n\n" + DEFAULT_INSTRUCTION}
    assert row["difficulty"] == 1
    assert messages[-1]["content"] == "2+2?"  # the input row is not mutated


def test_normalising_twice_changes_nothing() -> None:
    once, _ = normalize_verifiable_rows([GSM8K_ROW], "gsm8k", system_prompt="Be exact.")
    twice, problems = normalize_verifiable_rows(once, "gsm8k", system_prompt="Be exact.")
    assert problems == []
    assert twice == once


def test_prompt_template() -> None:
    (row,), problems = normalize_verifiable_rows(
        [{"prompt": "2+2?", "answer": "4"}], "mem", prompt_template="Problem: {prompt}\n{instruction}"
    )
    assert problems == []
    assert row["prompt"][0]["content"] == "Problem: 2+2?\n" + DEFAULT_INSTRUCTION


def test_prompt_template_without_placeholder_is_refused() -> None:
    with pytest.raises(DataError, match=r"no \{prompt\} placeholder"):
        normalize_verifiable_rows([{"prompt": "2+2?", "answer": "4"}], "mem", prompt_template="Solve it.")
    with pytest.raises(DataError, match="not a valid format string"):
        normalize_verifiable_rows([{"prompt": "2+2?", "answer": "4"}], "mem", prompt_template="{prompt} {oops}")


def test_problem_solution_reads_boxed_answer_or_answer_column() -> None:
    rows, problems = normalize_verifiable_rows(
        [
            {"problem": "Simplify 2/4.", "solution": "Divide by 2: $\\boxed{\\frac{1}{2}}$."},
            {"problem": "Area?", "solution": "It is 12.", "answer": "12"},
        ],
        "math",
        instruction=None,
    )
    assert problems == []
    assert rows[0]["answer"] == "\\frac{1}{2}"
    assert rows[0]["prompt"] == [{"role": "user", "content": "Simplify 2/4."}]
    assert rows[1]["answer"] == "12"


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"question": "2+2?"}, "answer", "missing reference answer"),
        ({"question": "2+2?", "answer": "work\n####  "}, "answer", "nothing after '####'"),
        ({"question": "  ", "answer": "4"}, "question", "empty text"),
        ({"prompt": "2+2?", "answer": ""}, "answer", "empty reference answer"),
        ({"prompt": "2+2?", "answer": ["4"]}, "answer", "string or number"),
        ({"prompt": [], "answer": "4"}, "prompt", "string or a non-empty list"),
        ({"prompt": [{"role": "robot", "content": "x"}], "answer": "4"}, "prompt[0].role", "unknown role"),
        ({"prompt": [{"role": "user", "content": 3}], "answer": "4"}, "prompt[0].content", "string content"),
        (
            {"prompt": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "answer": "4"},
            "prompt",
            "ends with an assistant turn",
        ),
        ({"problem": "Area?", "solution": "It is big."}, "solution", "no reference answer"),
    ],
)
def test_bad_rows_name_source_row_and_field(row: dict, field: str, reason: str) -> None:
    rows, problems = normalize_verifiable_rows([GSM8K_ROW, row], "data.jsonl")
    assert len(rows) == 1  # the good row survives
    (problem,) = problems
    assert (problem.source, problem.row, problem.field) == ("data.jsonl", 1, field)
    assert reason in str(problem)
    assert str(problem).startswith(f"data.jsonl, row 1, field '{field}'")


def test_unknown_shape_lists_accepted_shapes() -> None:
    _, (problem,) = normalize_verifiable_rows([{"text": "hi"}], "x.json")
    assert problem.row == 0 and problem.field is None
    assert "GSM8K" in str(problem) and "problem + solution" in str(problem) and "['text']" in str(problem)


def test_every_bad_row_is_reported() -> None:
    _, problems = normalize_verifiable_rows([{"question": "a"}, GSM8K_ROW, {"prompt": "b"}, 7], "x")
    assert [p.row for p in problems] == [0, 2, 3]


def test_a_system_prompt_the_row_overrides_is_counted() -> None:
    row = {"prompt": [{"role": "system", "content": "Row's own."}, {"role": "user", "content": "2+2?"}], "answer": "4"}
    rows, problems = normalize_verifiable_rows([row, GSM8K_ROW], "x.jsonl", system_prompt="Be exact.")
    assert problems == []
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Row's own."}
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be exact."}
    changed = rows.checks.summary()["changed"]
    assert [(r["row"], r["field"]) for r in changed["system_ignored"]["rows"]] == [(0, "prompt[0]")]
