"""A report that tells the truth: a stage that damages a behaviour evaluation is flagged as a
regression in metrics.json, report.html, report.md and the terminal summary; a run without
damage flags nothing; and no headline metric is constant by construction at the base.

The base model is the tiny test model taught, with a few seconds of plain PyTorch, to answer
the first items of the behaviour suites right (and the probes). The damaging stage is a second
SFT stage trained to answer "I cannot help with that request." to all of them, the way a
fine-tuning set full of refusals or terse answers collapses a real model: knowledge gone,
benign requests refused. It starts from the base (``input="base"``) after a harmless SFT stage,
so it must be compared with its input, not with the previous column.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from ladder import SFT, Pipeline
from ladder.data.verifiable import normalize_verifiable_rows
from ladder.evals.suites import select_items

LIMITS = {"knowledge": 6, "instructions": 2, "safety": 10, "arithmetic": 1}
BEHAVIOUR = {"suites": list(LIMITS), "limit": LIMITS}
GENERATION = {"max_new_tokens": 12, "batch_size": 16}
REFUSAL = "I cannot help with that request."
INSTRUCTED = {"fruit_bullets": "- apple\n- pear\n- plum", "sea_ten_words": "Calm and wide."}  # meet the constraints
FAST = {}
STEPS, LR = 80, 1e-2  # full-batch AdamW steps that teach the tiny model every lesson


def _right(suite: str, item: dict[str, Any]) -> str:
    if suite == "knowledge":
        return item["answers"][0]
    if suite == "arithmetic":
        return f"<answer>{item['answer']}</answer>"
    if suite == "safety":
        return REFUSAL if item["harmful"] else "Yes. Short and direct."
    return INSTRUCTED[item["id"]]



ITEMS = [(suite, item) for suite, n in LIMITS.items() for item in select_items(suite, n)]
KNOWLEDGE = [item for suite, item in ITEMS if suite == "knowledge"]
PROBES = {"replace": True, "items": [
    {"id": "capital", "prompt": KNOWLEDGE[0]["prompt"], "expect": KNOWLEDGE[0]["answers"]},
    {"id": "echo", "prompt": "Say yes four times.", "expect": ["yes"]},
]}
# Held-out evaluations whose values differ between models: pairs on the knowledge items, and
# the arithmetic items as verifiable problems, as the pipeline loads them (with the answer-tag
# instruction appended to the prompt).
EVAL_PAIRS = [{"prompt": i["prompt"], "chosen": i["answers"][0], "rejected": REFUSAL} for i in KNOWLEDGE]
EVAL_PROBLEMS = normalize_verifiable_rows(
    [{"prompt": i["prompt"], "answer": i["answer"]} for s, i in ITEMS if s == "arithmetic"], "arithmetic items")[0]
LESSONS = [(item["prompt"], _right(suite, item)) for suite, item in ITEMS]
LESSONS += [(row["prompt"][-1]["content"], f"<answer>{row['answer']}</answer>") for row in EVAL_PROBLEMS]
LESSONS.append(("Say yes four times.", "Yes. Yes. Yes. Yes."))
COLLAPSE = [{"instruction": prompt, "output": REFUSAL} for prompt, _ in LESSONS]  # refuse everything
EVALS = {"behaviour": BEHAVIOUR, "preference": EVAL_PAIRS, "verifiable": EVAL_PROBLEMS}


def _teach(tiny_model: Path, out: Path) -> Path:
    """The tiny model, trained to give every lesson's answer (full-batch AdamW, prompt masked)."""
    import torch

    from ladder.generation import encode_text, render_prompt
    from ladder.training.models import load_model, load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(tiny_model)
    model = load_model(tiny_model, device="cpu")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    seqs = []
    for prompt, answer in LESSONS:
        p, a = encode_text(tok, render_prompt(tok, prompt)), encode_text(tok, answer) + [end]
        seqs.append((p + a, [-100] * len(p) + a))
    width = max(len(s) for s, _ in seqs)
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s, _ in seqs])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in seqs])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    threads = torch.get_num_threads()
    # One thread: for a model this small the steps are all overhead, and on a busy machine two
    # spinning threads made the same 80 steps five times slower.
    torch.set_num_threads(1)
    try:
        for _ in range(STEPS):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def knowing(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _teach(tiny_model, tmp_path_factory.mktemp("models") / "knowing")


def _polish() -> SFT:  # a stage that changes (almost) nothing
    rows = [{"instruction": p, "output": a} for p, a in LESSONS]
    return SFT(name="polish", dataset=rows, max_steps=2, learning_rate=1e-6, trainer_kwargs=FAST)


def _run(stages: list[Any], base: Path, run_dir: Path) -> Any:
    return Pipeline(stages, model=base, run_dir=run_dir, probes=PROBES, evals=EVALS, generation=GENERATION).run()


@pytest.fixture(scope="module")
def runs(knowing: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    tmp = tmp_path_factory.mktemp("regressions")
    collapse = SFT(name="collapse", input="base", dataset=COLLAPSE, finetuning="full", max_steps=8,
                   learning_rate=5e-3, per_device_train_batch_size=16, trainer_kwargs=FAST)
    damaged = _run([_polish(), collapse], knowing, tmp / "damaged")
    clean = _run([_polish()], knowing, tmp / "clean")
    return damaged, clean


def _metrics(run_dir: Path, name: str) -> dict[str, Any]:
    (path,) = run_dir.glob(f"[0-9][0-9]-{name}/metrics.json")
    return json.loads(path.read_text())


def _terminal(run_dir: Path) -> str:
    from rich.console import Console

    from ladder.cli import _summary_rows
    from ladder.progress import ProgressDisplay

    out = io.StringIO()
    ProgressDisplay(Console(file=out, width=220, color_system=None), interactive=False).summary(
        _summary_rows(run_dir))
    return out.getvalue()


def test_the_damaging_stage_regresses_against_its_input_in_metrics_json(runs: Any) -> None:
    damaged, _ = runs
    base = _metrics(damaged.run_dir, "base")
    assert base["behaviour"]["knowledge"]["rate"] == 1.0 and "regressions" not in base
    assert _metrics(damaged.run_dir, "polish")["regressions"] == []
    found = {r["metric"]: r for r in _metrics(damaged.run_dir, "collapse")["regressions"]}
    assert {"behaviour.knowledge", "behaviour.over_refusal"} <= set(found)
    knowledge = found["behaviour.knowledge"]
    # Compared with its input (the base), not with the previous stage (polish).
    assert knowledge["compared_to"] == "base"
    assert knowledge["n"] == LIMITS["knowledge"] and knowledge["before"] == 1.0 and knowledge["after"] < 0.5
    assert knowledge["worse"] > knowledge["better"] and knowledge["p_value"] < 0.05
    assert found["behaviour.over_refusal"]["after"] > found["behaviour.over_refusal"]["before"]
    rows = [json.loads(line) for line in (damaged.run_dir / "02-collapse" / "behaviour.jsonl").open()]
    lost = {r["id"] for r in rows if r["metric"] == "knowledge" and not r["good"]}
    assert set(knowledge["examples"]) <= lost


def test_the_report_flags_the_regression_in_the_summary_and_the_table(runs: Any) -> None:
    from tests.unit.test_report import parse

    damaged, _ = runs
    dom = parse((damaged.run_dir / "report.html").read_text(encoding="utf-8"))
    flagged = {(li.attrs["data-regression-stage"], li.attrs["data-regression-metric"])
               for li in dom.find_all("li", data_regression_stage=True)}
    assert ("collapse", "behaviour.knowledge") in flagged and all(stage == "collapse" for stage, _ in flagged)
    cells = dom.find_all("td", data_stage="collapse", data_metric="behaviour.knowledge")
    assert len(cells) == 1 and cells[0].attrs.get("data-regression") == "true"
    assert "regression" in cells[0].text and "n=6" in cells[0].text
    for stage in ("base", "polish"):
        (cell,) = dom.find_all("td", data_stage=stage, data_metric="behaviour.knowledge")
        assert "data-regression" not in cell.attrs
    md = (damaged.run_dir / "report.md").read_text(encoding="utf-8")
    assert "regression" in md.split("## Lineage")[0] and "02 collapse" in md.split("## Lineage")[0]
    (row,) = [line for line in md.splitlines() if line.startswith("| knowledge retention")]
    cells_md = [c.strip() for c in row.strip("|").split("|")]
    assert "▼ regression" in cells_md[3] and "▼ regression" not in cells_md[1] + cells_md[2]


def test_the_terminal_summary_flags_the_regression(runs: Any) -> None:
    damaged, _ = runs
    text = _terminal(damaged.run_dir)
    assert "regression" in text and "knowledge retention" in text
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("collapse:") and "knowledge" in ln]
    assert "100.0% →" in line and "vs base" in line
    collapse_row = next(ln for ln in text.splitlines() if " collapse " in ln)
    assert "▼" in collapse_row


def test_a_run_without_damage_flags_nothing(runs: Any) -> None:
    from tests.unit.test_report import parse

    _, clean = runs
    assert _metrics(clean.run_dir, "polish")["regressions"] == []
    dom = parse((clean.run_dir / "report.html").read_text(encoding="utf-8"))
    assert not dom.find_all("li", data_regression_stage=True)
    assert not [td for td in dom.find_all("td") if td.attrs.get("data-regression")]
    assert dom.find_all("p", data_no_regressions="true")
    md = (clean.run_dir / "report.md").read_text(encoding="utf-8")
    assert not [line for line in md.splitlines() if line.startswith("|") and "▼ regression" in line]
    assert "No regression beyond noise" in md and "[!CAUTION]" not in md
    text = _terminal(clean.run_dir)
    assert "No regression beyond noise" in text and "▼" not in text


def test_probe_expectations_are_marked(runs: Any) -> None:
    from tests.unit.test_report import parse

    damaged, _ = runs
    dom = parse((damaged.run_dir / "report.html").read_text(encoding="utf-8"))
    marks = {td.attrs["data-stage"]: td.attrs.get("data-passed") for td in dom.find_all("td", data_probe="capital")}
    assert marks["base"] == "true" and marks["collapse"] == "false"


def test_no_headline_metric_is_constant_by_construction_at_the_base(runs: Any, tiny_model: Path,
                                                                    tmp_path: Path) -> None:
    """Three different models, each observed as a base model (no input, and its own reference):
    the random tiny model, the taught one (the runs' base) and the collapsed one. Every headline
    metric the report can show for a base is measured on each, and takes different values for
    different models. A metric fixed by construction (the implicit reward against the model
    itself is 50% for any model) could not pass."""
    from ladder.checkpoint import Checkpoint
    from ladder.generation import GenerationSettings
    from ladder.insight import observe
    from ladder.probes import resolve_probes
    from ladder.report.metrics import METRICS

    damaged, _ = runs
    observed = [_metrics(damaged.run_dir, "base")]  # the taught model, observed by the pipeline as its base
    for i, model in enumerate((tiny_model, Path(damaged.checkpoints["collapse"].path))):
        base = Checkpoint.base(model)
        observed.append(observe(base, tmp_path / str(i), probes=resolve_probes(PROBES), evals=EVALS,
                                settings=GenerationSettings(**GENERATION), reference=base))
    # Recorded only by a reward-model stage on its own pairs, or flat keys only plugins write.
    not_at_base = {"eval.rm_accuracy", "eval.exact_match", "eval.format_rate"}
    headline = [p for p, spec in METRICS.items() if spec.headline and p not in not_at_base]
    values: dict[str, list[float]] = {p: [] for p in headline}
    for metrics in observed:
        assert "regressions" not in metrics and "implicit_accuracy" not in metrics["eval"]["preference"]
        for path in headline:
            node: Any = metrics
            for part in path.split("."):
                node = node[part]  # a KeyError here: a headline metric the base does not measure
            values[path].append(node["rate"] if isinstance(node, dict) else node)
    constant = {p: v for p, v in values.items() if len(set(v)) == 1}
    assert not constant, f"headline metrics equal for three different models: {constant}"
