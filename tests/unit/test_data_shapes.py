"""The data shapes people bring from TRL, LLaMA-Factory, Axolotl and the hub, each written to a
file the way it is published, loaded and normalised into the exact trainer rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder.data.loading import load_rows
from ladder.data.preference import normalize_preference_rows
from ladder.data.sft import normalize_sft_rows
from ladder.data.verifiable import normalize_verifiable_rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def load(kind: str, spec: Any) -> tuple[list[dict[str, Any]], list[Any], Any]:
    normalise = {"sft": normalize_sft_rows, "preference": normalize_preference_rows,
                 "verifiable": normalize_verifiable_rows}[kind]
    rows, problems = normalise(*load_rows(spec))
    return rows, problems, rows.checks


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# --------------------------------------------------------------------------- H4 UltraFeedback


def h4_row(prompt: str, good: str, bad: str, i: int) -> dict[str, Any]:
    """A row of HuggingFaceH4/ultrafeedback_binarized (train_prefs), every column it has."""
    return {
        "prompt": prompt,
        "prompt_id": f"{i:064x}",
        "chosen": [user(prompt), assistant(good)],
        "rejected": [user(prompt), assistant(bad)],
        "messages": [user(prompt), assistant(good)],
        "score_chosen": 8.5,
        "score_rejected": 3.0,
    }


def test_h4_ultrafeedback_parquet_becomes_prompt_chosen_rejected(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "train_prefs.parquet", [
        h4_row("Name a fruit.", "Apple.", "Rock.", 0),
        h4_row("Name a colour.", "Blue.", "Loud.", 1),
    ])
    rows, problems, checks = load("preference", str(path))
    assert problems == []
    assert list(rows) == [
        {"prompt": [user("Name a fruit.")], "chosen": "Apple.", "rejected": "Rock."},
        {"prompt": [user("Name a colour.")], "chosen": "Blue.", "rejected": "Loud."},
    ]
    assert checks.summary()["dropped"] == {} and checks.summary()["changed"] == {}


def test_h4_multi_turn_prefix_is_the_prompt(tmp_path: Path) -> None:
    history = [{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello."), user("A fruit?")]
    row = {"prompt": "A fruit?", "chosen": [*history, assistant("Pear.")], "rejected": [*history, assistant("No.")]}
    # a multi-turn set that names the conversation by its first question is accepted too
    first = {**row, "prompt": "Hi"}
    rows, problems, _ = load("preference", str(write_jsonl(tmp_path / "mt.jsonl", [row, first])))
    assert problems == []
    assert list(rows) == [{"prompt": history, "chosen": "Pear.", "rejected": "No."}] * 2


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({**h4_row("Name a fruit.", "Apple.", "Rock.", 0), "prompt": "Name a city."}, "prompt",
         "is not the user turn that chosen and rejected answer ('Name a fruit.')"),
        ({"prompt": "Q", "chosen": [user("Q"), assistant("A")], "rejected": [user("Other"), assistant("B")]},
         "chosen", "exactly one assistant message"),
        ({"prompt": [user("Q")], "chosen": [{"role": "system", "content": "S"}, user("Q"), assistant("A")],
          "rejected": [{"role": "system", "content": "S"}, user("Q"), assistant("B")]}, "prompt",
         "is not the start that chosen and rejected share"),
        ({"prompt": "Q", "chosen": [user("Q"), assistant("Same")], "rejected": [user("Q"), assistant("Same")]},
         "chosen", "identical chosen and rejected"),
    ],
    ids=["prompt-from-another-row", "prefixes-differ", "prompt-messages-differ", "identical"],
)
def test_h4_rows_that_do_not_agree_name_row_and_field(tmp_path: Path, row: dict, field: str, words: str) -> None:
    good = h4_row("Name a fruit.", "Apple.", "Rock.", 0)
    path = write_jsonl(tmp_path / "prefs.jsonl", [good, row])
    rows, problems, _ = load("preference", str(path))
    assert len(rows) == 1
    (problem,) = problems
    assert (problem.source, problem.row, problem.field) == (str(path), 1, field)
    assert words in str(problem)


# --------------------------------------------------------------------------- Alpaca with history


def test_alpaca_history_becomes_earlier_turns_and_is_counted(tmp_path: Path) -> None:
    # LLaMA-Factory's alpaca format: instruction, input, output, system, history
    path = write_json(tmp_path / "alpaca.json", [
        {"instruction": "And 3+3?", "input": "", "output": "6", "system": "Be exact.",
         "history": [["1+1?", "2"], ["2+2?", "4"]]},
        {"instruction": "Translate", "input": "chat", "output": "cat", "history": []},
    ])
    rows, problems, checks = load("sft", str(path))
    assert problems == []
    assert list(rows) == [
        {"messages": [{"role": "system", "content": "Be exact."}, user("1+1?"), assistant("2"), user("2+2?"),
                      assistant("4"), user("And 3+3?"), assistant("6")]},
        {"messages": [user("Translate\n\nchat"), assistant("cat")]},
    ]
    summary = checks.summary()
    assert summary["changed"] == {"history": {"count": 1, "rows": [
        {"source": str(path), "row": 0, "field": "history", "why": "2 earlier exchange(s) put before the instruction"}
    ]}}
    assert (summary["loaded"], summary["kept"]) == (2, 2)


@pytest.mark.parametrize(
    ("history", "field"),
    [("1+1? 2", "history"), ([["1+1?"]], "history[0]"), ([["1+1?", 2]], "history[0]"), ([["1+1?", " "]],
                                                                                          "history[0][1]")],
)
def test_bad_history_names_row_and_field(tmp_path: Path, history: Any, field: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Hi", "output": "Hello", "history": history}])
    _, (problem,), _ = load("sft", str(path))
    assert (problem.source, problem.row, problem.field) == (str(path), 0, field)


# --------------------------------------------------------------------------- ShareGPT with tools

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_llama_factory_sharegpt_with_function_call_observation_system_and_tools(tmp_path: Path) -> None:
    # LLaMA-Factory's sharegpt format (glaive_toolcall style): tools is a JSON string column
    path = write_json(tmp_path / "glaive.json", [{
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
            {"from": "observation", "value": json.dumps({"temp": 22})},
            {"from": "gpt", "value": "It is 22 degrees."},
        ],
        "system": "You can look up the weather.",
        "tools": json.dumps([WEATHER]),
    }, {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        "system": "",
        "tools": "",
    }])
    rows, problems, _ = load("sft", str(path))
    assert problems == []
    assert list(rows) == [{
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            user("Weather in Paris?"),
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": '{"temp": 22}'},
            assistant("It is 22 degrees."),
        ],
        "tools": [{"type": "function", "function": WEATHER}],
    }, {"messages": [user("Hi"), assistant("Hello")]}]


def test_sharegpt_parallel_function_calls(tmp_path: Path) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather",
                                                                         "arguments": {"city": "Rome"}}]
    path = write_jsonl(tmp_path / "p.jsonl", [{"conversations": [
        {"from": "human", "value": "Paris and Rome?"}, {"from": "function_call", "value": json.dumps(calls)},
        {"from": "observation", "value": "22"}, {"from": "observation", "value": "25"},
        {"from": "gpt", "value": "22 and 25."}], "tools": json.dumps([WEATHER])}])
    (row,), problems, _ = load("sft", str(path))
    assert problems == []
    assert row["messages"][1]["tool_calls"] == [{"type": "function", "function": c} for c in calls]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]


# --------------------------------------------------------------------------- OpenAI tool calls


def test_openai_messages_with_tool_calls_keep_ids_and_parse_arguments(tmp_path: Path) -> None:
    row = {
        "messages": [
            user("Weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "22C"},
            assistant("22C in Paris."),
        ],
        "tools": [{"type": "function", "function": WEATHER}],
    }
    rows, problems, checks = load("sft", str(write_jsonl(tmp_path / "oai.jsonl", [row])))
    assert problems == []
    assert list(rows) == [{
        "messages": [
            user("Weather in Paris?"),
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                 "id": "call_1"}]},
            {"role": "tool", "content": "22C", "name": "get_weather", "tool_call_id": "call_1"},
            assistant("22C in Paris."),
        ],
        "tools": [{"type": "function", "function": WEATHER}],
    }]
    assert checks.summary()["changed"] == {}  # None content is Arrow's/OpenAI's "no text", not a change


# --------------------------------------------------------------------------- list-of-parts content


def test_list_of_parts_text_is_joined_in_every_kind_of_row(tmp_path: Path) -> None:
    def parts(*texts: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": t} for t in texts]

    sft = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [
        {"role": "user", "content": parts("Look: ", "what is 2+2?")},
        {"role": "assistant", "content": parts("4")}]}])
    rows, problems, checks = load("sft", str(sft))
    assert problems == [] and list(rows) == [{"messages": [user("Look: what is 2+2?"), assistant("4")]}]
    assert checks.summary()["changed"] == {}  # joining loses nothing

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{
        "prompt": [{"role": "user", "content": parts("Name ", "a fruit.")}],
        "chosen": [{"role": "assistant", "content": parts("Apple.")}],
        "rejected": [{"role": "assistant", "content": parts("Rock.")}]}])
    rows, problems, _ = load("preference", str(pairs))
    assert problems == [] and list(rows) == [{"prompt": [user("Name a fruit.")], "chosen": "Apple.",
                                              "rejected": "Rock."}]

    problems_file = write_jsonl(tmp_path / "problems.jsonl", [
        {"prompt": [{"role": "user", "content": parts("2+", "2?")}], "answer": "4"}])
    rows, problems, _ = load("verifiable", {"source": str(problems_file)})
    assert problems == [] and rows[0]["prompt"][0]["content"].startswith("2+2?\n\n")


IMAGE_ROW = {"messages": [
    {"role": "user", "content": [{"type": "image", "image": "cat.png"}, {"type": "text", "text": "What is it?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]}
TEXT_ROW = {"messages": [user("Hi"), assistant("Hello")]}


def test_an_image_part_is_an_error_naming_row_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mm.jsonl", [TEXT_ROW, IMAGE_ROW])
    rows, (problem,), _ = load("sft", str(path))
    assert len(rows) == 1
    assert (problem.source, problem.row, problem.field) == (str(path), 1, "messages[0].content[0]")
    assert "part of type 'image'" in str(problem) and "drop: [non_text]" in str(problem)


def test_drop_non_text_leaves_image_rows_out_and_counts_them(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mm.jsonl", [TEXT_ROW, IMAGE_ROW, TEXT_ROW])
    rows, problems, checks = load("sft", {"source": str(path), "drop": ["non_text"]})
    assert problems == []
    assert list(rows) == [{"messages": [user("Hi"), assistant("Hello")]}] * 2
    assert rows.indices == [0, 2]  # the kept rows' numbers in the file
    summary = checks.summary()
    assert (summary["loaded"], summary["kept"]) == (3, 2)
    assert summary["dropped"]["non_text"]["count"] == 1
    (named,) = summary["dropped"]["non_text"]["rows"]
    assert (named["source"], named["row"], named["field"]) == (str(path), 1, "messages[0].content[0]")
    # a broken row is still an error: drop: [non_text] drops only non-text rows
    broken = write_jsonl(tmp_path / "broken.jsonl", [TEXT_ROW, IMAGE_ROW, {"messages": [user("Hi")]}])
    _, (problem,), checks = load("sft", {"source": str(broken), "drop": "non_text"})
    assert (problem.row, problem.field) == (2, "messages") and checks.summary()["dropped"]["non_text"]["count"] == 1


def test_drop_invalid_counts_every_unusable_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [TEXT_ROW, {"messages": [user("Hi")]}, {"text": "?"}, IMAGE_ROW])
    rows, problems, checks = load("sft", {"source": str(path), "drop": ["invalid"]})
    assert problems == [] and len(rows) == 1
    dropped = checks.summary()["dropped"]
    assert {k: v["count"] for k, v in dropped.items()} == {"invalid": 2, "non_text": 1}
    assert [r["row"] for r in dropped["invalid"]["rows"]] == [1, 2]
    # nothing left is a problem, not an empty training set
    _, (problem,), _ = load("sft", {"source": str(write_jsonl(tmp_path / "e.jsonl", [IMAGE_ROW])),
                                    "drop": ["non_text"]})
    assert "every row was dropped" in str(problem)
