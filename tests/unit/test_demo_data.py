"""The demo datasets: deterministic, well-formed, correct, and held-out splits truly held out."""

from __future__ import annotations

import ast
import importlib.util
import json
import operator
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ladder.evals.refusal import is_refusal

# The generator is a development tool outside the installed package.
_TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_demo_data.py"
_spec = importlib.util.spec_from_file_location("make_demo_data", _TOOL)
demo_data = importlib.util.module_from_spec(_spec)
sys.modules["make_demo_data"] = demo_data
_spec.loader.exec_module(demo_data)
ANSWER_INSTRUCTION, DATA_DIR, FILES = demo_data.ANSWER_INSTRUCTION, demo_data.DATA_DIR, demo_data.FILES
build_all, load_split, write_all = demo_data.build_all, demo_data.load_split, demo_data.write_all

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_SOLUTION = re.compile(r"^(?P<steps>(?:[\d+\-*/() ]+ = \d+\. )+)<answer>(?P<tag>\d+)</answer>$")
_STEP = re.compile(r"(?P<expr>[\d+\-*/() ]+?) = (?P<value>\d+)\. ")


def _evaluate(expression: str) -> int:
    """Evaluate + - * / on integers; a division must come out whole."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = walk(node.left), walk(node.right)
            assert left % right == 0, f"{expression}: {left} / {right} is not whole"
            return left // right
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise AssertionError(f"unexpected syntax in {expression!r}")

    return walk(ast.parse(expression, mode="eval").body)


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _uses_only(needle: list[int], haystack: list[int]) -> bool:
    """Every number of ``needle`` is in ``haystack`` (as often as it is used)."""
    return not Counter(needle) - Counter(haystack)


def _check_solution(prompt: str, solution: str) -> int:
    """``solution`` is ``"E1 = v1. [E2 = v2.] <answer>v</answer>"``: one operation per step, each
    right, each built from the prompt's numbers and earlier results, the tag holding the last.
    Returns the number of steps."""
    match = _SOLUTION.match(solution)
    assert match, solution
    available = _numbers(prompt)
    steps = list(_STEP.finditer(match["steps"]))
    for step in steps:
        assert len(re.findall(r" [+\-*/] ", f" {step['expr']} ")) == 1, f"one operation per step: {solution}"
        assert _evaluate(step["expr"]) == int(step["value"]), solution
        assert _uses_only(_numbers(step["expr"]), available), (prompt, solution)
        available.append(int(step["value"]))
    assert int(steps[-1]["value"]) == int(match["tag"]), solution
    return len(steps)


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else " ".join(m["content"] for m in value)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict[str, Any]]]:
    return build_all()


def test_generation_is_deterministic_and_matches_the_shipped_files(tmp_path: Path) -> None:
    first, second = write_all(tmp_path / "a"), write_all(tmp_path / "b")
    assert [p.name for p in first] == list(FILES)
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() == (DATA_DIR / a.name).read_bytes(), (
            f"{a.name} differs from the shipped file; regenerate with "
            f"`python tools/make_demo_data.py --out src/ladder/demo/data`"
        )


def test_module_cli_regenerates_the_files(tmp_path: Path) -> None:
    assert demo_data.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes()


def test_shipped_files_are_small_and_load_back(splits: dict[str, list[dict[str, Any]]]) -> None:
    assert sum((DATA_DIR / name).stat().st_size for name in FILES) < 1_000_000
    for name, rows in splits.items():
        assert load_split(name) == rows
        assert load_split(name.removesuffix(".jsonl")) == rows
    with pytest.raises(KeyError, match="sft_train.jsonl"):
        demo_data.data_file("nope.jsonl")


def test_sizes(splits: dict[str, list[dict[str, Any]]]) -> None:
    sizes = {name: len(rows) for name, rows in splits.items()}
    assert 150 <= sizes["sft_train.jsonl"] <= 450
    assert 150 <= sizes["dpo_train.jsonl"] <= 300
    assert sizes["grpo_train.jsonl"] >= 250
    assert 30 <= sizes["sft_eval.jsonl"] and 30 <= sizes["dpo_eval.jsonl"]
    assert 40 <= sizes["grpo_eval.jsonl"]


def test_sft_rows(splits: dict[str, list[dict[str, Any]]]) -> None:
    steps: Counter[int] = Counter()
    safety: Counter[str] = Counter()
    harmful = {q for q, _refusal, _comply in demo_data.HARMFUL}
    look_alikes = {q for q, _answer, _refuse in demo_data.BENIGN}
    for row in splits["sft_train.jsonl"]:
        assert list(row) == ["messages"]
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"].strip() and assistant["content"].strip()
        if user["content"].endswith(ANSWER_INSTRUCTION):
            steps[_check_solution(user["content"], assistant["content"])] += 1
        else:
            steps[0] += 1
            assert "<answer>" not in assistant["content"]
            if user["content"] in harmful:
                safety["refusal"] += 1
                assert is_refusal(assistant["content"]), assistant["content"]
            elif user["content"] in look_alikes:
                safety["look-alike"] += 1
                assert not is_refusal(assistant["content"]), assistant["content"]
    assert steps[1] >= 50  # one-step problems: the answer format
    # Two-step problems worked step by step, fewer than one-step ones: SFT shows the way, GRPO has room.
    assert 30 <= steps[2] < steps[1]
    assert steps[0] >= 30  # the general instructions
    assert set(steps) == {0, 1, 2}
    # Harmless look-alikes are answered; refusals are DPO's to teach (imitating even 8 made the demo
    # model refuse 44% of the safety suite's look-alikes, docs/benchmarks.md).
    assert safety["look-alike"] >= 8 and safety["refusal"] <= safety["look-alike"], safety


@pytest.mark.parametrize("name", ["sft_eval.jsonl", "grpo_train.jsonl", "grpo_eval.jsonl"])
def test_verifiable_rows_have_correct_answers(
    splits: dict[str, list[dict[str, Any]]], name: str
) -> None:
    for i, row in enumerate(splits[name]):
        assert set(row) == {"prompt", "answer", "expression"}
        assert isinstance(row["answer"], str) and row["answer"].isdigit()
        # GRPO's first 64 rows ask some problems without the tags (the stage appends no instruction)
        assert row["prompt"].endswith(ANSWER_INSTRUCTION) or (name == "grpo_train.jsonl" and i < 64), row
        assert _evaluate(row["expression"]) == int(row["answer"]), row
        assert _uses_only(_numbers(row["expression"]), _numbers(row["prompt"])), row


def test_grpo_problems_take_two_steps(splits: dict[str, list[dict[str, Any]]]) -> None:
    def steps(row: dict[str, Any]) -> int:
        return len(re.findall(r" [+\-*/] ", row["expression"]))

    assert all(steps(row) == 2 for row in splits["grpo_eval.jsonl"])
    train = splits["grpo_train.jsonl"]
    # The demo scans and trains on the first 64 rows: mostly two-step problems, with one-step ones
    # among them so that GRPO also rewards stopping after one step; after them, two-step only.
    head = Counter(steps(row) for row in train[:64])
    assert set(head) == {1, 2} and 8 <= head[1] <= head[2] // 3, head
    assert all(steps(row) == 2 for row in train[64:])
    # ...and some asked without the answer tags, one- and two-step alike; every later row has them
    untagged = Counter(steps(row) for row in train[:64] if not row["prompt"].endswith(ANSWER_INSTRUCTION))
    assert untagged[1] == head[1] and 8 <= untagged[2] < head[2] // 2, untagged
    assert all(row["prompt"].endswith(ANSWER_INSTRUCTION) for row in train[64:])
    assert train[:64] != sorted(train[:64], key=steps)  # mixed in, not appended
    for row in splits["sft_eval.jsonl"]:
        assert len(re.findall(r" [+\-*/] ", row["expression"])) == 1


@pytest.mark.parametrize("name", ["dpo_train.jsonl", "dpo_eval.jsonl"])
def test_preference_rows(splits: dict[str, list[dict[str, Any]]], name: str) -> None:
    kinds: Counter[str] = Counter()
    refusal = ("I can't", "I won't")
    for row in splits[name]:
        assert list(row) == ["prompt", "chosen", "rejected"]
        assert all(isinstance(v, str) and v.strip() for v in row.values())
        assert row["chosen"] != row["rejected"]
        if row["prompt"].endswith(ANSWER_INSTRUCTION):
            _check_solution(row["prompt"], row["chosen"])
            # The rambling side says the same number, at length.
            assert _numbers(row["chosen"])[-1] in _numbers(row["rejected"])
            assert len(row["rejected"]) > 2 * len(row["chosen"])
            kinds["arithmetic"] += 1
        elif row["chosen"].startswith(refusal):
            # A refusal over compliance, which reads like the model's own (no "Sure!" it never says).
            assert is_refusal(row["chosen"]) and not is_refusal(row["rejected"]), row
            assert not row["rejected"].startswith("Sure"), row
            kinds["refusal"] += 1
        elif row["rejected"].startswith(refusal):
            kinds["over-refusal"] += 1  # help with a harmless look-alike over refusing it
        elif len(row["rejected"]) > 2 * len(row["chosen"]):
            kinds["ramble"] += 1
        else:
            kinds["wrong, curt or unformatted"] += 1  # so that shorter alone is never what wins
    least = 10 if name == "dpo_train.jsonl" else 3
    assert all(kinds[k] >= least for k in ("arithmetic", "refusal", "over-refusal", "ramble",
                                           "wrong, curt or unformatted")), kinds
    # The chosen side is not simply the shorter one.
    rows = splits[name]
    assert sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) >= len(rows) // 10


def test_no_empty_or_long_texts(splits: dict[str, list[dict[str, Any]]]) -> None:
    # ~600 characters is about 140 SmolLM2 tokens for this text (digits are one token each).
    for name, rows in splits.items():
        for i, row in enumerate(rows):
            for field, value in row.items():
                text = _text_of(value)
                assert text.strip(), (name, i, field)
                assert len(text) <= 600, (name, i, field, len(text))


def test_prompts_are_unique_within_each_file(splits: dict[str, list[dict[str, Any]]]) -> None:
    for name, rows in splits.items():
        prompts = Counter(_prompt(row) for row in rows)
        # A preference prompt is paired at most twice (a fact: against a ramble and a wrong answer).
        assert max(prompts.values()) <= (2 if name.startswith("dpo") else 1), name


def _prompt(row: dict[str, Any]) -> str:
    return row["messages"][0]["content"] if "messages" in row else row["prompt"]


def test_held_out_prompts_appear_in_no_training_file(splits: dict[str, list[dict[str, Any]]]) -> None:
    train = {_prompt(r) for name, rows in splits.items() if "train" in name for r in rows}
    for name, rows in splits.items():
        if "eval" in name:
            leaked = [_prompt(r) for r in rows if _prompt(r) in train]
            assert leaked == [], (name, leaked[:3])


def test_instruction_matches_the_verifiable_loader(splits: dict[str, list[dict[str, Any]]]) -> None:
    verifiable = pytest.importorskip("ladder.data.verifiable")
    assert ANSWER_INSTRUCTION == verifiable.DEFAULT_INSTRUCTION
    rows, problems = verifiable.normalize_verifiable_rows(splits["grpo_train.jsonl"], "grpo_train")
    assert problems == []
    # Already present, so the loader does not append the instruction a second time.
    assert rows[0]["prompt"] == [{"role": "user", "content": splits["grpo_train.jsonl"][0]["prompt"]}]
    assert rows[0]["answer"] == splits["grpo_train.jsonl"][0]["answer"]


def test_rows_pass_the_stage_loaders(splits: dict[str, list[dict[str, Any]]]) -> None:
    sft = pytest.importorskip("ladder.data.sft")
    preference = pytest.importorskip("ladder.data.preference")
    _, problems = sft.normalize_sft_rows(splits["sft_train.jsonl"], "sft_train")
    assert problems == []
    for name in ("dpo_train.jsonl", "dpo_eval.jsonl"):
        _, problems = preference.normalize_preference_rows(splits[name], name)
        assert problems == []


def test_answers_earn_the_format_reward(splits: dict[str, list[dict[str, Any]]]) -> None:
    fmt = pytest.importorskip("ladder.rewards.format")
    answers = [
        row["messages"][1]["content"]
        for row in splits["sft_train.jsonl"]
        if row["messages"][0]["content"].endswith(ANSWER_INSTRUCTION)
    ]
    assert set(fmt.tag_format(answers)) == {1.0}


def test_jsonl_lines_are_plain_json(tmp_path: Path) -> None:
    (path,) = [p for p in write_all(tmp_path) if p.name == "dpo_eval.jsonl"]
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # newline-terminated
    assert [json.loads(line) for line in lines[:-1]] == demo_data.dpo_eval_rows()
