"""Tests of the CPT stage: how a plugin author tests a stage without network or GPU.

Run: ``pip install -e plugins/ladder-cpt && pytest plugins/ladder-cpt/tests``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from ladder import ConfigError, DataError, Pipeline
from ladder.stage import StageContext
from ladder.testing import build_tiny_model
from ladder_cpt import CPT, load_texts


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A random 2-layer Qwen2 + a locally trained tokenizer, built in-process in about a second.
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_txt_documents_are_separated_by_blank_lines(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first doc,\nstill first\n\n\nsecond doc\n   \nthird doc\n")

    texts, label, problems = load_texts(corpus)

    assert texts == ["first doc,\nstill first", "second doc", "third doc"]
    assert (label, problems) == (str(corpus), [])


def test_a_txt_file_without_text_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    ctx = StageContext(run_dir=tmp_path, work_dir=tmp_path, final_dir=tmp_path, trainer_dir=tmp_path)

    assert CPT(dataset=str(tmp_path / "blank.txt")).validate(ctx) == [
        f"stage 'cpt': {tmp_path / 'blank.txt'}: no text in the file; put documents in it, separated by blank lines"
    ]
    assert CPT(dataset=str(tmp_path / "missing.txt")).validate(ctx) == [
        f"stage 'cpt': {tmp_path / 'missing.txt'}: no such file; give an existing .txt file"
    ]


def test_validate_reports_every_bad_row(tmp_path: Path) -> None:
    rows = [{"text": "ok"}, {"body": "no text"}, {"text": ["not", "a", "string"]}, {"text": "\n"}]
    stage = CPT(dataset=rows)

    problems = stage.validate(StageContext(run_dir=tmp_path, work_dir=tmp_path, final_dir=tmp_path,
                                           trainer_dir=tmp_path))

    assert problems == [
        "stage 'cpt': <in-memory rows>, row 1, field 'text': missing field; CPT rows need their raw text in `text`",
        "stage 'cpt': <in-memory rows>, row 2, field 'text': expected a string, got list",
        "stage 'cpt': <in-memory rows>, row 3, field 'text': empty text; remove the row",
    ]
    _texts, _label, errors = load_texts(rows)
    assert [(e.row, e.field) for e in errors] == [(1, "text"), (2, "text"), (3, "text")]
    assert all(isinstance(e, DataError) for e in errors)


def test_settings_are_checked_when_the_stage_is_built() -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        CPT(dataset="x.txt", learning_rate=0)
    with pytest.raises(ConfigError, match="packing"):
        CPT(dataset="x.txt", packing="yes")
    with pytest.raises(ConfigError, match="unknown setting 'epochs'"):
        CPT(dataset="x.txt", epochs=2)


def test_cpt_trains_a_lora_and_merges_it(tiny_model: Path, tmp_path: Path) -> None:
    docs = [{"text": f"Document {i}: the capital of France is Paris, and 2 + 3 is 5."} for i in range(8)]
    stage = CPT(dataset=docs, max_steps=2, per_device_train_batch_size=2, max_length=32, learning_rate=1e-2)

    result = Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()

    out = result.final
    assert out.stage == "cpt" and out.parent is not None and out.parent.path == str(tiny_model)
    before = load_file(str(tiny_model / "model.safetensors"))
    after = load_file(str(Path(out.path) / "model.safetensors"))
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # the LoRA targets, merged
    assert Path(out.adapter_path or "", "adapter_config.json").is_file()


def test_same_text_gives_the_same_fingerprint_from_any_source(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("alpha beta\n\ngamma\n")
    from_file = CPT(dataset=str(corpus))
    from_rows = CPT(dataset=[{"text": "alpha beta"}, {"text": "gamma"}])
    edited = CPT(dataset=[{"text": "alpha beta"}, {"text": "gamma!"}])
    pipeline = Pipeline([from_file], model="unused")

    assert pipeline.fingerprint(from_file, "in") == pipeline.fingerprint(from_rows, "in")
    assert pipeline.fingerprint(from_file, "in") != pipeline.fingerprint(edited, "in")
