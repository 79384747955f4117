"""The behaviour evaluations in the report and the terminal summary, from hand-written run
directories (the layout ladder writes: behaviour records in metrics.json, per-item rows in
behaviour.jsonl, ``regressions`` per stage)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from ladder.evals.runner import find_regressions, rate_record
from ladder.report import write_report
from ladder.report.metrics import METRICS
from tests.unit.test_report import make_run, parse

IDS = [f"q{i}" for i in range(8)]
# Per stage, which of the 8 knowledge items it gets right (True) and which of 8 instruction
# items it follows. dpo (input: sft) loses knowledge; sft gains instruction following.
GOOD = {
    "base": {"knowledge": [True] * 6 + [False] * 2, "instructions": [False] * 8},
    "sft": {"knowledge": [True] * 7 + [False], "instructions": [True] * 7 + [False]},
    "dpo": {"knowledge": [False] * 7 + [True], "instructions": [True] * 7 + [False]},
    "grpo": {"knowledge": [True] * 7 + [False], "instructions": [True] * 6 + [False] * 2},
}
PARENT = {"sft": "base", "dpo": "sft", "grpo": "sft"}


def _outcomes(stage: str) -> dict[str, dict[str, bool]]:
    return {metric: dict(zip(IDS, goods, strict=True)) for metric, goods in GOOD[stage].items()}


def _add_behaviour(run: Path, *, regressions: bool = True) -> None:
    for stage in GOOD:
        directory = next(run.glob(f"0?-{stage}"))
        rows = [{"suite": m, "metric": m, "id": i, "prompt": f"question {i}?", "answer": f"{stage} says {i}",
                 "good": good, "hit": good} for m, items in _outcomes(stage).items() for i, good in items.items()]
        (directory / "behaviour.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        metrics = json.loads((directory / "metrics.json").read_text())
        for metric, goods in GOOD[stage].items():
            metrics["behaviour"][metric] = rate_record(sum(goods), len(goods))
        if stage in PARENT and regressions:
            metrics["regressions"] = find_regressions(_outcomes(PARENT[stage]), _outcomes(stage),
                                                      compared_to=PARENT[stage])
        (directory / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    path = make_run(tmp_path)
    _add_behaviour(path)
    return path


def test_the_damaging_stage_is_flagged_in_the_summary_and_the_table(run: Path) -> None:
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    (item,) = dom.find_all("li", data_regression_stage=True)
    assert (item.attrs["data-regression-stage"], item.attrs["data-regression-metric"]) == ("dpo", "behaviour.knowledge")
    assert "87.5% → 12.5% vs sft" in item.text and "7 worse, 1 better; p = 0.035" in item.text
    # The items that got worse, with the input's answer and the stage's.
    examples = item.find_all("tr", data_example=True)
    assert [e.attrs["data-example"] for e in examples] == IDS[:3]
    assert "sft says q0" in examples[0].text and "dpo says q0" in examples[0].text
    cells = {c.attrs["data-stage"]: c for c in dom.find_all("td", data_metric="behaviour.knowledge")}
    assert cells["dpo"].attrs["data-regression"] == "true" and cells["dpo"].has_class("regressed")
    assert float(cells["dpo"].attrs["data-p-value"]) == pytest.approx(9 / 256)
    assert all("data-regression" not in cells[s].attrs for s in ("base", "sft", "grpo"))
    # The rate, its interval and its sample size.
    assert cells["dpo"].find_all("span", **{"class": "v"})[0].text == "12.5%"
    assert "[2.2–47.1] n=8" in cells["dpo"].text
    assert float(cells["dpo"].attrs["data-value"]) == 0.125 and cells["dpo"].attrs["data-n"] == "8"
    # dpo started from sft: its change is against sft's 87.5%, not base's.
    (delta,) = [span for span in cells["dpo"].find_all("span") if span.has_class("delta")]
    assert delta.text == "−75.0 pt" and delta.has_class("bad")


def test_gains_are_held_to_the_same_test(run: Path) -> None:
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    gains = {(li.attrs["data-gain-stage"], li.attrs["data-gain-metric"]) for li in dom.find_all("li", data_gain_stage=True)}
    # sft follows 7 of 8 instructions where the base followed none; grpo (from sft) moved by one
    # item, which is noise; dpo lost, it gained nothing.
    assert gains == {("sft", "behaviour.instructions")}
    text = next(li for li in dom.find_all("li", data_gain_stage="sft")).text
    assert "0.0% → 87.5% vs base" in text and "7 worse" not in text


def test_markdown_flags_the_regression_too(run: Path) -> None:
    md = write_report(run).md.read_text(encoding="utf-8")
    summary = md.split("## Lineage")[0]
    assert "> **1 regression beyond noise**" in summary
    assert "**02 dpo**: knowledge retention 87.5% → 12.5% vs sft" in summary
    assert "q0: “sft says q0” → “dpo says q0”" in summary
    (row,) = [line for line in md.splitlines() if line.startswith("| knowledge retention")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith("12.5% [2.2–47.1] n=8 (−75.0 pt 🔻)") and cells[3].endswith("**▼ regression**")
    assert all("regression" not in c for c in cells[1:3] + cells[4:])


def test_no_regression_and_no_measurement_are_both_said(tmp_path: Path) -> None:
    clean = make_run(tmp_path / "clean")
    _add_behaviour(clean)
    for stage in ("sft", "dpo", "grpo"):
        path = next(clean.glob(f"0?-{stage}")) / "metrics.json"
        data = json.loads(path.read_text())
        data["regressions"] = []
        path.write_text(json.dumps(data))
    dom = parse(write_report(clean).html.read_text(encoding="utf-8"))
    (ok,) = dom.find_all("p", data_no_regressions="true")
    assert "01 sft, 02 dpo, 03 grpo" in ok.text
    unmeasured = make_run(tmp_path / "unmeasured")
    html = write_report(unmeasured).html.read_text(encoding="utf-8")
    assert "No behaviour evaluation ran" in html and "data-no-regressions" not in html


def test_the_headline_table_holds_headlines_only(run: Path) -> None:
    for stage in ("sft", "dpo"):  # the DPO diagnostic, as observe() records it for stages
        path = next(run.glob(f"0?-{stage}")) / "metrics.json"
        data = json.loads(path.read_text())
        data["eval"]["preference"] = {"accuracy": 0.6, "accuracy_per_token": 0.7, "margin": 1.0, "n": 10,
                                      "implicit_accuracy": 0.9, "implicit_margin": 0.3, "reference": "base"}
        path.write_text(json.dumps(data))
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    main, folded = dom.find_all("table", **{"class": "metrics"})
    main_paths = {tr.attrs["data-metric"] for tr in main.find_all("tr", data_metric=True)}
    folded_paths = {tr.attrs["data-metric"] for tr in folded.find_all("tr", data_metric=True)}
    assert main_paths and all(METRICS[p].headline for p in main_paths)
    assert {"behaviour.knowledge", "behaviour.instructions", "eval.preference.accuracy",
            "eval.preference.accuracy_per_token"} <= main_paths
    assert {"eval.preference.implicit_accuracy", "eval.preference.n", "train.loss_last"} <= folded_paths
    assert not main_paths & folded_paths


def test_the_terminal_summary_names_each_regression(run: Path) -> None:
    from rich.console import Console

    from ladder.cli import _summary_rows
    from ladder.progress import ProgressDisplay

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["base"]["metrics"] = json.loads((run / "00-base" / "metrics.json").read_text())
    for entry in manifest["stages"]:
        entry["metrics"] = json.loads((run / entry["dir"] / "metrics.json").read_text())
    (run / "manifest.json").write_text(json.dumps(manifest))
    rows = _summary_rows(run)
    assert [r["stage"] for r in rows] == ["base", "sft", "dpo", "grpo"]
    dpo = rows[2]
    assert dpo["knowledge"] == "12.5% ▼" and dpo["instructions"] == "87.5%"
    assert [r["metric"] for r in dpo["regressions"]] == ["behaviour.knowledge"] and rows[1]["regressions"] == []
    out = io.StringIO()
    ProgressDisplay(Console(file=out, width=200, color_system=None), interactive=False).summary(rows)
    text = out.getvalue()
    (table_row,) = [line for line in text.splitlines() if "│ dpo" in line]
    assert "▼ knowledge" in table_row
    assert "▼ 1 regression beyond noise" in text
    assert "dpo: knowledge retention 87.5% → 12.5% vs sft (8 items: 7 worse, 1 better; p = 0.035)" in text


def test_markup_in_stage_names_reaches_the_terminal_as_text() -> None:
    from rich.console import Console

    from ladder.progress import ProgressDisplay

    out = io.StringIO()
    entry: dict[str, Any] = {"metric": "behaviour.knowledge", "label": "knowledge retention", "before": 1.0,
                             "after": 0.0, "n": 5, "worse": 5, "better": 0, "p_value": 1 / 32, "compared_to": "[b]x"}
    ProgressDisplay(Console(file=out, width=200, color_system=None), interactive=False).summary(
        [{"stage": "[red]evil", "status": "complete", "regressions": [entry]}])
    assert "[red]evil" in out.getvalue() and "vs [b]x" in out.getvalue()
