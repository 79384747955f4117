"""The data shapes through real stages on the tiny model: tool-calling rows train on the call
and the answer (and not on the tool's result), a template without tool support is refused
before training, and what loading and normalising did reaches metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder import DPO, SFT, Pipeline, ValidationError

FAST = {}
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CITIES = ["Paris", "Rome", "Oslo", "Lima"]


def glaive_row(city: str) -> dict[str, Any]:
    """LLaMA-Factory's sharegpt tool-calling shape (glaive_toolcall), as a JSON file holds it."""
    return {
        "conversations": [
            {"from": "human", "value": f"Weather in {city}?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city}})},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": f"It is sunny in {city}."},
        ],
        "tools": json.dumps([WEATHER]),
    }


def qwen_training_template() -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_training.jinja").read_text(encoding="utf-8")


def context(tmp_path: Path) -> Any:
    from ladder.stage import StageContext

    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                        trainer_dir=tmp_path / "t")


@pytest.fixture
def tool_file(tmp_path: Path) -> Path:
    path = tmp_path / "glaive.json"
    path.write_text(json.dumps([glaive_row(c) for c in CITIES]), encoding="utf-8")
    return path


def test_tool_calls_are_trained_on_and_tool_results_are_masked(tiny_model: Path, tool_file: Path,
                                                               tmp_path: Path) -> None:
    from ladder.checkpoint import Checkpoint

    stage = SFT(dataset=str(tool_file), max_steps=1, chat_template=qwen_training_template(), trainer_kwargs=FAST)
    trainer, facts = stage.build_trainer(Checkpoint.base(tiny_model), context(tmp_path))
    tok = facts["tokenizer"]
    example = trainer.train_dataset[0]
    ids, labels = example["input_ids"], example["labels"]
    text = tok.decode(ids)
    assert json.dumps({"type": "function", "function": WEATHER}) in text  # the tool definition is in the prompt
    trained = tok.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
    assert trained == ('\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
                       "<|im_end|>\n\nIt is sunny in Paris.<|im_end|>\n")
    masked = tok.decode([i for i, label in zip(ids, labels, strict=True) if label == -100])
    assert "<tool_response>\nsunny\n</tool_response>" in masked and "Weather in Paris?" in masked
    assert facts["data_checks"]["loaded"] == facts["data_checks"]["kept"] == 4


def test_the_tiny_models_chatml_template_is_refused_for_tool_rows(tiny_model: Path, tool_file: Path,
                                                                 tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ValidationError) as info:
        Pipeline([SFT(dataset=str(tool_file), max_steps=1)], model=tiny_model, run_dir=run_dir, probes=False).run()
    message = str(info.value)
    assert f"{tool_file}, row 0, field 'messages[1].tool_calls'" in message
    assert "does not render this assistant turn's tool calls" in message
    assert not run_dir.exists() or not any(p.name.startswith("01-") for p in run_dir.iterdir())


def test_a_mix_with_tool_rows_trains_and_what_loading_did_reaches_metrics_json(
        tiny_model: Path, tool_file: Path, tmp_path: Path) -> None:
    image = {"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"},
                                                       {"type": "text", "text": "What is it?"}]},
                          {"role": "assistant", "content": "A cat."}]}
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps({"instruction": f"Say {i}", "output": f"{i}", "history": [["Hi", "Hello"]]})
                         + "\n" for i in range(6)))
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in [
        image, *({"q": f"Add {i} and 1", "r": f"{i + 1}"} for i in range(4))]))
    dataset = {"mix": [{"source": str(tool_file)}, {"source": str(a), "fraction": 0.5},
                       {"source": str(b), "columns": {"instruction": "q", "output": "r"}, "count": 5}],
               "seed": 0, "drop": ["non_text"]}
    result = Pipeline(
        [SFT(dataset=dataset, max_steps=4, learning_rate=5e-3, per_device_train_batch_size=2, save_steps=0,
             chat_template=qwen_training_template(), trainer_kwargs=FAST)],
        model=tiny_model, run_dir=tmp_path / "run", probes=False,
    ).run()
    metrics = json.loads((result.run_dir / "01-sft" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4
    assert metrics["train"]["loss_last"] < metrics["train"]["loss_first"]
    checks = metrics["stage_metrics"]["data_checks"]
    assert (checks["loaded"], checks["kept"]) == (12, 11)
    assert checks["sources"] == [{"source": str(tool_file), "available": 4, "taken": 4},
                                 {"source": str(a), "available": 6, "taken": 3},
                                 {"source": str(b), "available": 5, "taken": 5}]
    (dropped,) = checks["dropped"]["non_text"]["rows"]
    assert (dropped["source"], dropped["row"], dropped["field"]) == (str(b), 0, "messages[0].content[0]")
    assert checks["changed"]["history"]["count"] == 3
    assert {r["source"] for r in checks["changed"]["history"]["rows"]} == {str(a)}
    assert checks["overlength"]["overlength_rows"] == 0 and checks["duplicate_rows"] == 0


def test_h4_ultrafeedback_pairs_reach_dpo(tiny_model: Path, tmp_path: Path) -> None:
    from ladder.checkpoint import Checkpoint

    rows = []
    for i in range(10):
        prompt = f"Question {i}: a fruit?"
        rows.append({"prompt": prompt, "prompt_id": str(i), "score_chosen": 9.0, "score_rejected": 2.0,
                     "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "Apple."}],
                     "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "Rock."}],
                     "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "Apple."}]})
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train_prefs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    stage = DPO(dataset=str(path), heldout_fraction=0.2, max_steps=1, trainer_kwargs=FAST)
    trainer, facts = stage.build_trainer(Checkpoint.base(tiny_model), context(tmp_path))
    assert len(facts["train"]) == 8 and len(facts["heldout"]) == 2
    first = facts["train"][0]
    assert first["prompt"] == [{"role": "user", "content": first["prompt"][0]["content"]}]
    assert (first["chosen"], first["rejected"]) == ("Apple.", "Rock.")
    assert (facts["data_checks"]["loaded"], facts["data_checks"]["kept"]) == (10, 10)
    assert len(trainer.train_dataset) == 8
