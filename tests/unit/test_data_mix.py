"""Dataset specs: columns: renaming, mix: of several datasets, hub config/split, and the errors
that name what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder.data.loading import DatasetSpec, as_spec, content_hash, load_rows
from ladder.data.rows import Origin
from ladder.data.sft import normalize_sft_rows
from ladder.errors import DataError


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def alpaca(n: int, tag: str) -> list[dict[str, str]]:
    return [{"instruction": f"{tag} question {i}", "output": f"{tag} answer {i}"} for i in range(n)]


# --------------------------------------------------------------------------- columns


def test_columns_map_the_files_names_onto_ladders(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "response": "4", "id": 7}])
    rows, label = load_rows({"source": path, "columns": {"instruction": "question", "output": "response"}})
    assert list(rows) == [{"id": 7, "instruction": "2+2?", "output": "4"}]
    normalised, problems = normalize_sft_rows(rows, label)
    assert problems == []
    assert list(normalised) == [{"messages": [{"role": "user", "content": "2+2?"},
                                              {"role": "assistant", "content": "4"}]}]
    assert normalised.checks.summary()["columns"] == {"instruction": "question", "output": "response"}


def test_columns_can_swap_two_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "chosen": "Go away.", "rejected": "Hello!"}])
    rows, _ = load_rows({"source": path, "columns": {"chosen": "rejected", "rejected": "chosen"}})
    assert list(rows) == [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}]


def test_a_mapped_column_the_file_lacks_is_named_with_the_columns_present(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4"}])
    with pytest.raises(DataError) as info:
        load_rows({"source": path, "columns": {"instruction": "question", "output": "response"}})
    err = info.value
    assert (err.source, err.field) == (path, "response")
    assert "'output' to 'response'" in str(err) and "['answer', 'question']" in str(err)


def test_a_column_mapped_onto_an_existing_one_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "a", "instruction": "b", "output": "c"}])
    with pytest.raises(DataError, match="both 'question' and 'instruction'") as info:
        load_rows({"source": path, "columns": {"instruction": "question"}})
    assert (info.value.row, info.value.field) == (0, "instruction")


def test_columns_must_be_a_mapping_of_names() -> None:
    with pytest.raises(DataError, match="columns: expected a mapping"):
        as_spec({"source": "x.jsonl", "columns": ["instruction"]})


# --------------------------------------------------------------------------- mix


@pytest.fixture
def parts(tmp_path: Path) -> tuple[str, str]:
    return write_jsonl(tmp_path / "a.jsonl", alpaca(10, "a")), write_jsonl(tmp_path / "b.jsonl", alpaca(6, "b"))


def test_mix_takes_a_fraction_and_a_count_seeded_and_reproducibly(parts: tuple[str, str]) -> None:
    a, b = parts
    spec = {"mix": [{"source": a, "fraction": 0.7}, {"source": b, "count": 4}], "seed": 0}
    rows, label = load_rows(spec)
    assert label == f"mix({a}, {b})"
    assert len(rows) == 11
    assert sum(r["instruction"].startswith("a ") for r in rows) == 7
    assert sum(r["instruction"].startswith("b ") for r in rows) == 4
    assert {o.source for o in rows.origins} == {a, b}
    for row, origin in zip(rows, rows.origins, strict=True):  # each row knows its file and row there
        tag = "a" if origin.source == a else "b"
        assert row == {"instruction": f"{tag} question {origin.row}", "output": f"{tag} answer {origin.row}"}
    assert rows.checks.sources == [{"source": a, "available": 10, "taken": 7}, {"source": b, "available": 6,
                                                                                 "taken": 4}]
    again, _ = load_rows(spec)
    assert list(again) == list(rows) and again.origins == rows.origins
    other, _ = load_rows({**spec, "seed": 1})
    assert list(other) != list(rows)
    # the fingerprint follows the content: the same rows hash the same, other rows do not
    assert content_hash(normalize_sft_rows(again, label)[0]) == content_hash(normalize_sft_rows(rows, label)[0])
    assert content_hash(normalize_sft_rows(other, label)[0]) != content_hash(normalize_sft_rows(rows, label)[0])


def test_mix_without_seed_takes_each_parts_first_rows_in_order(parts: tuple[str, str]) -> None:
    a, b = parts
    rows, _ = load_rows({"mix": [{"source": a, "count": 2}, {"source": b}]})
    assert rows.origins == [Origin(a, 0), Origin(a, 1)] + [Origin(b, i) for i in range(6)]


def test_each_part_has_its_own_columns_and_limit(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", alpaca(5, "a"))
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"q": f"q{i}", "r": f"r{i}"} for i in range(5)])
    rows, label = load_rows({"mix": [{"source": a, "limit": 2},
                                     {"source": qa, "columns": {"instruction": "q", "output": "r"}, "count": 1}]})
    assert list(rows) == [*alpaca(2, "a"), {"instruction": "q0", "output": "r0"}]
    normalised, problems = normalize_sft_rows(rows, label)
    assert problems == [] and len(normalised) == 3


def test_a_bad_row_in_a_mix_is_named_by_its_file_and_row(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", alpaca(3, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", [*alpaca(2, "b"), {"instruction": "no answer"}])
    rows, label = load_rows({"mix": [{"source": a}, {"source": b}], "seed": 3})
    normalised, (problem,) = normalize_sft_rows(rows, label)
    assert (problem.source, problem.row, problem.field) == (b, 2, "output")
    assert len(normalised) == 5


def test_drop_on_a_mix_counts_per_part(tmp_path: Path) -> None:
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "A cat."}]}
    a = write_jsonl(tmp_path / "a.jsonl", alpaca(2, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", [image, *alpaca(1, "b")])
    rows, label = load_rows({"mix": [{"source": a}, {"source": b}], "drop": ["non_text"]})
    normalised, problems = normalize_sft_rows(rows, label)
    assert problems == [] and len(normalised) == 3
    summary = normalised.checks.summary()
    assert summary["dropped"]["non_text"]["rows"][0]["source"] == b
    assert summary["sources"] == [{"source": a, "available": 2, "taken": 2}, {"source": b, "available": 2,
                                                                              "taken": 2}]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"mix": [{"source": "A", "count": 11}]}, "asks for count: 11 rows but this part has 10"),
        ({"mix": [{"source": "A", "fraction": 0.01}]}, "takes no row"),
        ({"mix": [{"source": "A", "fraction": 1.5}]}, "fraction must be in (0, 1]"),
        ({"mix": [{"source": "A", "fraction": 0.5, "count": 2}]}, "fraction or count, not both"),
        ({"mix": [{"mix": [{"source": "A"}]}]}, "cannot itself be a mix"),
        ({"mix": [{"source": "A", "drop": ["non_text"]}]}, "drop: applies to the whole mix"),
        ({"mix": [{"source": "A"}], "columns": {"output": "x"}}, "put it on each part"),
        ({"mix": []}, "needs either a source or a mix: list"),
        ({"mix": "a.jsonl"}, "mix: expected a list of datasets"),
        ({"source": "A", "fraction": 0.5}, "use limit for one dataset"),
        ({"source": "A", "colums": {}}, "unknown dataset setting(s) 'colums'"),
        ({"source": "A", "drop": ["images"]}, "drop: unknown ['images']"),
    ],
)
def test_mix_settings_that_cannot_work_are_refused(parts: tuple[str, str], spec: dict, words: str) -> None:
    a, _ = parts

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return a if value == "A" else value

    with pytest.raises(DataError, match=None) as info:
        load_rows(resolve(spec))
    assert words in str(info.value)


def test_a_spec_is_built_from_python_too_and_round_trips_through_its_dict(parts: tuple[str, str]) -> None:
    from ladder.stage import config_to_dict

    a, b = parts
    spec = DatasetSpec(mix=[DatasetSpec(source=a, count=1), {"source": b, "count": 1, "columns": {"x": "output"}}],
                       seed=0, drop="non_text")
    assert spec.mix[1].count == 1 and spec.drop == ("non_text",)
    # the manifest (and the Modal executor) carry a spec as its dict; it reads back as the same spec
    assert as_spec(config_to_dict(spec)) == spec
    rows, _ = load_rows(spec)
    assert len(rows) == 2


def test_seed_and_limit_on_one_file_still_name_the_files_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [*alpaca(5, "a"), {"instruction": "no answer"}])
    rows, label = load_rows({"source": path, "seed": 1})
    _, (problem,) = normalize_sft_rows(rows, label)
    assert problem.row == 5  # its row in the file, wherever the shuffle put it


# --------------------------------------------------------------------------- hub config and split


class FakeHub:
    """Stands in for ``datasets.load_dataset`` (the hub cannot be reached here); records calls."""

    def __init__(self, real: Any) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.real = real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and args[0] in ("json", "parquet", "csv"):  # local files still load for real
            return self.real(*args, **kwargs)
        self.calls.append((args, kwargs))
        return [{"instruction": "hub question", "output": "hub answer"}]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    import datasets

    fake = FakeHub(datasets.load_dataset)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    return fake


def test_hub_config_and_split_are_passed_to_load_dataset(hub: FakeHub) -> None:
    rows, label = load_rows({"source": "org/name", "config": "en", "split": "train[:10%]"})
    assert hub.calls == [(("org/name",), {"name": "en", "split": "train[:10%]"})]
    assert label == "org/name" and rows.origins == [Origin("org/name", 0)]


@pytest.mark.parametrize(
    ("spec", "call"),
    [
        ("org/name", (("org/name",), {"name": None, "split": "train"})),
        ({"source": "org/name", "name": "zh"}, (("org/name",), {"name": "zh", "split": "train"})),
        ("dpo_en_zh_20k", (("llamafactory/DPO-En-Zh-20k",), {"name": "en", "split": "train"})),
        ({"source": "gsm8k", "split": "test"}, (("openai/gsm8k",), {"name": "main", "split": "test"})),
        ({"source": "gsm8k", "config": "socratic"}, (("openai/gsm8k",), {"name": "socratic", "split": "train"})),
    ],
)
def test_presets_and_defaults_reach_load_dataset(hub: FakeHub, spec: Any, call: tuple) -> None:
    load_rows(spec)
    assert hub.calls == [call]


def test_hub_settings_on_a_local_file_are_refused(hub: FakeHub, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", alpaca(2, "a"))
    with pytest.raises(DataError, match="config and split pick part of a hub dataset"):
        load_rows({"source": path, "config": "en", "split": "train"})
    with pytest.raises(DataError, match="give config .* once"):
        as_spec({"source": "org/name", "config": "en", "name": "zh"})
    assert hub.calls == []


def test_a_hub_part_in_a_mix(hub: FakeHub, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", alpaca(2, "a"))
    rows, _ = load_rows({"mix": [{"source": path}, {"source": "org/name", "config": "en", "count": 1}]})
    assert hub.calls == [(("org/name",), {"name": "en", "split": "train"})]
    assert rows.origins[-1] == Origin("org/name", 0)
