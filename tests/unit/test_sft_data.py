"""SFT rows with tools: what is refused (named by row and field), what is counted, how the rows
reach the trainer unchanged, and the check that the chat template renders their tool calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder.data.length import LengthRule, chat_lengths, enforce_rows, preflight_rows
from ladder.data.loading import load_rows
from ladder.data.rendering import check_tools_render
from ladder.data.sft import normalize_sft_rows, sft_dataset
from ladder.errors import DataError

USER = {"role": "user", "content": "Weather in Paris?"}
CHAT_RULE = LengthRule(lengths_of=chat_lengths, limit=4096, policy="error")
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {"name": "search", "description": "Search the web", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
    "required": ["query"]}}}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def tool_row(name: str = "get_weather", tools: list | None = None, **arguments: Any) -> dict[str, Any]:
    return {
        "messages": [USER, {"role": "assistant", "content": "", "tool_calls": [call(name, **(arguments or
                                                                                          {"city": "Paris"}))]},
                     {"role": "tool", "content": "22C"}, {"role": "assistant", "content": "22C."}],
        "tools": tools if tools is not None else [WEATHER],
    }


def problem_of(row: dict[str, Any]) -> DataError:
    rows, problems = normalize_sft_rows([{"messages": [USER, {"role": "assistant", "content": "Hi"}]}, row], "t.jsonl")
    assert len(rows) == 1, [str(p) for p in problems]
    (problem,) = problems
    assert (problem.source, problem.row) == ("t.jsonl", 1)
    return problem


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"messages": [USER, {"role": "tool", "content": "22C"}, {"role": "assistant", "content": "22C."}]},
         "messages[1]", "a tool result with no tool call before it"),
        (tool_row("get_wether"), "messages[1].tool_calls[0]", "calls 'get_wether', which the row's tools do not define"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": "{city: Paris"}}]}]}, "messages[1].tool_calls[0].function.arguments",
         "not valid JSON"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}]},
         "messages[1].tool_calls[0].function.name", "missing tool name"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [call("f")], "content": None}], "tools": "[{"},
         "tools", "tool definitions are not valid JSON"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [call("f")]}], "tools": [{"description": "x"}]},
         "tools[0]", "without a name"),
        ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "function_call", "value": "get_weather(Paris)"}]},
         "conversations[1].value", "a function_call turn holds a JSON call"),
        ({"conversations": [{"from": "robot", "value": "Hi"}]}, "conversations[0].from", "unknown speaker 'robot'"),
        ({"messages": [USER, {"role": "assistant", "content": " "}]}, "messages[1].content", "empty assistant turn"),
        ({"messages": [USER, {"role": "assistant", "content": {"text": "x"}}]}, "messages[1].content",
         "expected string content or a list of {type, text} parts, got dict"),
        ({"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": 3}]}]},
         "messages[1].content[0].text", "as a string"),
        ({"messages": [USER, {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {}}]}]},
         "messages[1].content[0]", "part of type 'input_audio'"),
    ],
)
def test_unusable_rows_name_row_and_field(row: dict, field: str, words: str) -> None:
    problem = problem_of(row)
    assert problem.field == field, str(problem)
    assert words in str(problem)


def test_tool_calls_are_refused_where_only_text_answers_train() -> None:
    from ladder.data.preference import normalize_preference_rows

    row = {"prompt": [USER], "chosen": [{"role": "assistant", "tool_calls": [call("get_weather", city="Paris")]}],
           "rejected": "No."}
    _, (problem,) = normalize_preference_rows([row], "p.jsonl")
    assert problem.field == "chosen[0]" and "tool calls are supported in SFT data only" in str(problem)


def test_fields_ladder_does_not_use_are_counted_not_silently_lost() -> None:
    row = {"messages": [{**USER, "weight": 0}, {"role": "assistant", "content": "22C.", "reasoning": "look"}],
           "system": "Be brief."}
    rows, problems = normalize_sft_rows([row, {"messages": [{"role": "system", "content": "Other."}, USER,
                                                            {"role": "assistant", "content": "A"}],
                                               "system": "Be brief."}], "t.jsonl")
    assert problems == []
    assert rows[0]["messages"] == [{"role": "system", "content": "Be brief."}, USER,
                                   {"role": "assistant", "content": "22C."}]
    changed = rows.checks.summary()["changed"]
    assert changed["ignored_fields"]["count"] == 2
    assert [(r["row"], r["field"], r["why"]) for r in changed["ignored_fields"]["rows"]] == [
        (0, "messages[0]", "left out weight"), (0, "messages[1]", "left out reasoning")]
    assert [(r["row"], r["field"]) for r in changed["system_ignored"]["rows"]] == [(1, "system")]


def test_the_trainer_dataset_gives_every_row_back_exactly() -> None:
    rows = [tool_row(), tool_row("search", [SEARCH], query="cats", top_k=3),
            {"messages": [USER, {"role": "assistant", "content": "Sunny."}]}]
    ds = sft_dataset(rows)
    assert [ds[i] for i in range(3)] == [{**r, "tools": r.get("tools")} for r in rows]
    # what a plain Dataset.from_list does instead: every call gets the other calls' argument names
    from datasets import Dataset

    merged = Dataset.from_list(rows)[0]["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert merged == {"city": "Paris", "query": None, "top_k": None}


# --------------------------------------------------------------------------- rendering


def trl_template(name: str) -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from ladder.training.models import load_tokenizer

    return load_tokenizer(tiny_model)


def test_a_template_that_renders_tools_passes_and_lengths_include_the_tools(tokenizer: Any) -> None:
    template = trl_template("qwen2_5_training.jinja")
    rows, problems = normalize_sft_rows([tool_row(), tool_row("search", [SEARCH], query="cats")], "t.jsonl")
    assert problems == []
    check_tools_render(tokenizer, rows, template, "t.jsonl")
    with_tools = chat_lengths(tokenizer, rows, template)
    without = chat_lengths(tokenizer, [{"messages": r["messages"]} for r in rows], template)
    assert all(a > b for a, b in zip(with_tools, without, strict=True))
    kept, data_checks = enforce_rows(tokenizer, rows, [0, 1], source="t.jsonl", rule=CHAT_RULE, template=template)
    assert len(kept) == 2
    assert (data_checks["loaded"], data_checks["kept"], data_checks["dropped"]) == (2, 2, {})


def test_a_template_without_tool_support_is_refused_naming_the_row(tokenizer: Any, tmp_path: Path) -> None:
    from ladder.training.chat_format import training_chat_template

    chatml = training_chat_template(tokenizer)  # the tiny model's ChatML: no tools
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"messages": [USER, {"role": "assistant",
                                                                                "content": "Sunny."}]},
                                                            tool_row()]))
    rows, problems = normalize_sft_rows(*load_rows(str(path)))
    assert problems == []
    with pytest.raises(DataError) as info:
        enforce_rows(tokenizer, rows, None, source=str(path), rule=CHAT_RULE, template=chatml)
    err = info.value
    assert (err.source, err.row, err.field) == (str(path), 1, "messages[1].tool_calls")
    assert "does not render this assistant turn's tool calls" in str(err)


def test_a_template_that_drops_tool_definitions_is_refused(tokenizer: Any) -> None:
    # renders the call but never the `tools` the model is meant to choose from
    template = ("{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}{%- if m.tool_calls %}"
                "{%- for c in m.tool_calls %}{{- c.function.name }}{%- endfor %}{%- endif %}"
                "{%- generation %}{{- m.content + '<|im_end|>\\n' }}{%- endgeneration %}{%- endfor %}")
    rows, _ = normalize_sft_rows([tool_row()], "t.jsonl")
    with pytest.raises(DataError) as info:
        check_tools_render(tokenizer, rows, template, "t.jsonl")
    assert (info.value.row, info.value.field) == (0, "tools")


def test_preflight_reports_the_template_problem(tokenizer: Any, tiny_model: Path, tmp_path: Path) -> None:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext
    from ladder.training.chat_format import training_chat_template

    ctx = StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                       trainer_dir=tmp_path / "t", checkpoints={"base": Checkpoint.base(tiny_model)})
    rows, _ = normalize_sft_rows([tool_row()], "t.jsonl")
    found = preflight_rows(ctx, rows, [0], source="t.jsonl", rule=CHAT_RULE, template=training_chat_template(tokenizer))
    assert len(found) == 1 and found[0].startswith("t.jsonl, row 0, field 'messages[1].tool_calls'")
