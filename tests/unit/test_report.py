"""The run report: HTML/Markdown/plots built from hand-written run directories.

The fixtures follow the run-directory contract (manifest.json, NN-name/ with metrics.json,
probes.jsonl, trainer_log.jsonl, COMPLETE) without running any training.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ladder.errors import ConfigError
from ladder.report import ReportPaths, load_run, write_report
from ladder.report.metrics import flatten, format_value, spec_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ---------------------------------------------------------------- fixture run directories

PROBES = [
    ("capital", "What is the capital of France?"),
    ("math", "What is 17 * 3? Answer inside <answer></answer>."),
    ("inject", "Repeat exactly: <script>alert('x')</script> & \"quotes\""),
]

ANSWERS = {
    "base": [
        ("Paris Paris Paris Paris Paris Paris", 128, False),
        ("17 * 3 is a multiplication problem. Let us think about it for a very long time", 128, False),
        ("<script>alert('x')</script> & \"quotes\"", 12, True),
    ],
    "sft": [
        ("The capital of France is Paris.", 8, True),
        ("17 * 3 = 51. <answer>51</answer>", 14, True),
        ("<script>alert('x')</script> & \"quotes\" | pipe ```fence```", 14, True),
    ],
    "dpo": [
        ("Paris.", 3, True),
        ("<answer>51</answer>", 7, True),
        ("I will not run scripts: <script>", 9, True),
    ],
    "grpo": [
        ("Paris", 2, True),
        ("<answer>51</answer>", 7, True),
        ("<b>bold</b>\nsecond line", 40, False),
    ],
}

METRICS: dict[str, dict[str, Any]] = {
    "base": {
        "eval": {"preference_accuracy": 0.5, "preference_margin": 0.0, "exact_match": 0.05, "format_rate": 0.1},
        "behaviour": {"mean_answer_tokens": 96.0, "stop_rate": 1 / 3, "repetition": 0.41},
    },
    "sft": {
        "train": {"loss_first": 2.987654, "loss_last": 1.234567, "steps": 40, "runtime_s": 75.25,
                  "train_tokens": 123456, "epochs": 1.0},
        "eval": {"preference_accuracy": 0.55, "preference_margin": 0.0123, "exact_match": 0.2, "format_rate": 0.7},
        "behaviour": {"mean_answer_tokens": 12.0, "stop_rate": 1.0, "repetition": 0.05},
    },
    "dpo": {
        "train": {"loss_first": 0.6931, "loss_last": 0.4012, "steps": 30, "runtime_s": 50.0, "train_tokens": 98765},
        "eval": {"preference_accuracy": 0.8125, "preference_margin": 1.75, "exact_match": 0.15, "format_rate": 0.65},
        "behaviour": {"mean_answer_tokens": 6.333333333333333, "stop_rate": 1.0, "repetition": 0.02},
        "stage_metrics": {"heldout_before": {"accuracy": 0.55, "margin": 0.0123},
                          "heldout_after": {"accuracy": 0.8125, "margin": 1.75}},
    },
    "grpo": {
        "train": {"loss_first": 0.0, "loss_last": 0.00042, "steps": 20, "runtime_s": 3700.0, "train_tokens": 5000},
        "eval": {"exact_match": 0.45, "format_rate": 0.95},
        "behaviour": {"mean_answer_tokens": 16.333333333333332, "stop_rate": 2 / 3, "repetition": 0.0},
    },
}


def _sft_log() -> list[dict[str, Any]]:
    log = [{"loss": 3.0 - 0.045 * s, "learning_rate": 2e-4, "grad_norm": 1.5 - 0.02 * s,
            "mean_token_accuracy": 0.3 + 0.01 * s, "epoch": s / 40, "step": s} for s in range(1, 41)]
    log.append({"eval_loss": 1.4, "eval_mean_token_accuracy": 0.6, "epoch": 1.0, "step": 40})
    log.append({"train_runtime": 75.25, "train_loss": 2.1, "epoch": 1.0, "step": 40})
    return log


def _dpo_log() -> list[dict[str, Any]]:
    return [{"loss": 0.6931 - 0.01 * s, "rewards/accuracies": min(1.0, 0.5 + 0.02 * s),
             "rewards/margins": 0.05 * s, "rewards/chosen": 0.02 * s, "rewards/rejected": -0.03 * s,
             "logps/chosen": -40.0, "logps/rejected": -45.0, "step": s} for s in range(1, 31)]


def _grpo_log(steps: int = 20) -> list[dict[str, Any]]:
    log = []
    for s in range(1, steps + 1):
        log.append({
            "loss": 0.0001 * s, "reward": 0.2 + 0.03 * s, "reward_std": 0.3,
            "rewards/exact_match/mean": 0.1 + 0.03 * s, "rewards/exact_match/std": 0.4,
            "rewards/tag_format/mean": 0.5 + 0.02 * s if s != 3 else None,
            "rewards/tag_format/std": 0.2, "frac_reward_zero_std": max(0.0, 0.6 - 0.03 * s),
            "completions/mean_length": 60.0 - s, "completions/min_length": 20.0,
            "completions/max_length": 128.0, "kl": 0.001 * s, "step": s,
        })
    return log


STAGES = [
    # name, kind, input, log
    ("sft", "sft", "base", _sft_log),
    ("dpo", "dpo", "sft", _dpo_log),
    ("grpo", "grpo", "sft", _grpo_log),
]


def _write_jsonl(path: Path, rows: list[dict[str, Any]], *, torn_tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + torn_tail
    path.write_text(text, encoding="utf-8")


def _probe_rows(stage: str) -> list[dict[str, Any]]:
    rows = []
    for (pid, prompt), (answer, ntok, stopped) in zip(PROBES, ANSWERS[stage], strict=True):
        rows.append({"id": pid, "prompt": prompt, "answer": answer, "num_tokens": ntok,
                     "stopped": stopped, "finish_reason": "stop" if stopped else "length"})
    return rows


def _metrics_file(name: str, kind: str, index: int) -> dict[str, Any]:
    return {"stage": name, "kind": kind, "index": index, **METRICS[name]}


def make_run(root: Path, *, fail_last: bool = False) -> Path:
    """A 3-stage run (sft -> dpo, and grpo branching from sft); optionally grpo crashed."""
    run = root / ("failed-run" if fail_last else "demo-run")
    run.mkdir(parents=True)
    t0 = 1_700_000_000.0
    base_dir = run / "00-base"
    base_dir.mkdir()
    (base_dir / "metrics.json").write_text(json.dumps(_metrics_file("base", "base", 0)))
    _write_jsonl(base_dir / "probes.jsonl", _probe_rows("base"))

    entries = []
    clock = t0 + 30
    for index, (name, kind, input_, log_fn) in enumerate(STAGES, start=1):
        dir_name = f"{index:02d}-{name}"
        failed = fail_last and name == "grpo"
        duration = METRICS[name]["train"]["runtime_s"] + 10
        entry: dict[str, Any] = {
            "name": name, "kind": kind, "index": index, "dir": dir_name, "input": input_,
            "status": "failed" if failed else "complete", "fingerprint": f"fp-{name}-0123456789",
            "config": {"learning_rate": 2e-4, "lora": {"r": 16, "alpha": 32},
                       "dataset": f"demo/{name}.jsonl", "note": "<i>not markup</i>"},
            "started_at": clock, "finished_at": None if failed else clock + duration,
            "duration_s": None if failed else duration,
            "error": None,
            "checkpoint": None if failed else {"path": str(run / dir_name / "model"),
                                               "parent": {"stage": input_}},
            "metrics": {} if failed else _metrics_file(name, kind, index),
        }
        if failed:
            entry["error"] = ("RewardError: reward 'exact_match' returned 3 values for 4 completions "
                              "at step 7; make it return one float per completion")
            entry["traceback"] = "Traceback (most recent call last):\n  File \"grpo.py\", line 1\nRewardError"
            entry["finished_at"] = clock + 12
            tmp = run / f"{dir_name}.tmp-a1b2c3"
            _write_jsonl(tmp / "trainer_log.jsonl", log_fn(6), torn_tail='{"loss": 0.1, "rew')
        else:
            d = run / dir_name
            (d / "model").mkdir(parents=True)
            (d / "adapter").mkdir()
            (d / "metrics.json").write_text(json.dumps(_metrics_file(name, kind, index), indent=2))
            _write_jsonl(d / "probes.jsonl", _probe_rows(name))
            _write_jsonl(d / "trainer_log.jsonl", log_fn())
            (d / "COMPLETE").write_text("{}")
            clock += duration
        entries.append(entry)

    manifest = {
        "ladder_version": "0.1.0", "run_name": run.name, "created_at": t0,
        "status": "failed" if fail_last else "complete",
        "recipe": {"base": "tiny-qwen2", "stages": [{"stage": n, "input": i} for n, _, i, _ in STAGES]},
        "settings": {"seed": 0, "max_new_tokens": 128},
        "versions": {"torch": "2.13.0", "trl": "1.16.0", "transformers": "5.24.0"},
        "base": {"path": "/models/tiny-qwen2", "stage": "base", "fingerprint": "fp-base"},
        "stages": entries,
        "error": f"stage 'grpo' failed: {entries[-1]['error']}" if fail_last else None,
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run


# ---------------------------------------------------------------- a tiny DOM for assertions


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self) -> Any:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        out = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            ok = True
            for key, want in attrs.items():
                key = key.replace("_", "-")
                if want is True:
                    ok = ok and key in node.attrs
                else:
                    ok = ok and node.attrs.get(key) == want
            if ok:
                out.append(node)
        return out

    def has_class(self, name: str) -> bool:
        return name in (self.attrs.get("class") or "").split()


_VOID = {"img", "br", "meta", "col", "link", "input", "hr", "source", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(html_text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html_text)
    builder.close()
    return builder.root


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def complete_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportPaths, Node]:
    run = make_run(tmp_path_factory.mktemp("runs"))
    paths = write_report(run)
    return run, paths, parse(paths.html.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def failed_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportPaths, Node]:
    run = make_run(tmp_path_factory.mktemp("runs"), fail_last=True)
    paths = write_report(run)
    return run, paths, parse(paths.html.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- tests


def test_writes_html_md_and_plots_inside_the_run(complete_report: Any) -> None:
    run, paths, _ = complete_report
    assert paths.html == run / "report.html" and paths.md == run / "report.md"
    assert paths.plots and all(p.parent == run / "plots" for p in paths.plots)
    for png in paths.plots:
        assert png.read_bytes().startswith(PNG_MAGIC)
    # Atomic writes leave no temp files behind.
    leftovers = [p.name for p in [*run.iterdir(), *(run / "plots").iterdir()] if ".tmp-" in p.name]
    assert leftovers == []


def test_load_run_gives_stages_in_order_with_lineage(tmp_path: Path) -> None:
    view = load_run(make_run(tmp_path))
    assert [s.name for s in view.stages] == ["base", "sft", "dpo", "grpo"]
    assert [s.index for s in view.stages] == [0, 1, 2, 3]
    assert view.parent_of(view.stage("grpo")).name == "sft"  # the branch
    assert view.parent_of(view.stage("dpo")).name == "sft"
    assert view.parent_of(view.stage("sft")).name == "base"
    assert view.base_model == "/models/tiny-qwen2"
    assert view.probe_ids() == [pid for pid, _ in PROBES]
    base = view.stage("base")
    assert [p.hit_limit for p in base.probes] == [True, True, False]
    assert view.stage("dpo").metrics["eval"]["preference_accuracy"] == 0.8125
    assert len(view.stage("sft").log) == 42
    assert view.duration_s == pytest.approx(30 + 85.25 + 60 + 3710)
    assert all(not s.problems for s in view.stages)


def test_every_probe_answer_of_every_stage_is_in_the_grid(complete_report: Any) -> None:
    _, _, dom = complete_report
    for stage, answers in ANSWERS.items():
        for (pid, _prompt), (answer, ntok, stopped) in zip(PROBES, answers, strict=True):
            cells = dom.find_all("td", data_probe=pid, data_stage=stage)
            assert len(cells) == 1, (pid, stage)
            text = cells[0].find_all("div")[0].text
            assert text == answer
            assert f"{ntok} tokens" in cells[0].text
            # Answers that ran into the token limit are flagged, the others are not.
            assert cells[0].attrs["data-hit-limit"] == ("false" if stopped else "true")
            assert ("token limit" in cells[0].text) is (not stopped)
    # Prompts are shown once per probe row.
    for pid, prompt in PROBES:
        row = dom.find_all("tr", data_probe=pid)
        assert len(row) == 1 and prompt in row[0].text


def test_metrics_table_numbers_equal_metrics_json(complete_report: Any) -> None:
    run, _, dom = complete_report
    # The main table, and the folded one of stage-specific numbers, share their columns.
    tables = dom.find_all("table", **{"class": "metrics"})
    assert len(tables) == 2
    seen: set[tuple[str, str]] = set()
    cells = [c for table in tables for c in table.find_all("td", data_metric=True)]
    for cell in cells:
        stage, path = cell.attrs["data-stage"], cell.attrs["data-metric"]
        stage_dir = next(run.glob(f"*-{stage}"))
        metrics = json.loads((stage_dir / "metrics.json").read_text())
        expected = dict(flatten(metrics))[path]
        assert float(cell.attrs["data-value"]) == expected, (stage, path)
        shown = cell.find_all("span", **{"class": "v"})[0].text
        assert shown == format_value(expected, spec_for(path, expected).unit), (stage, path)
        seen.add((stage, path))
    # Every number of every metrics.json section has its cell, one column per stage.
    for stage, sections in METRICS.items():
        for path, _ in flatten(sections):
            assert (stage, path) in seen, (stage, path)
    for table in tables:
        headers = [th.attrs.get("data-stage") for th in table.find_all("thead")[0].find_all("th")]
        assert headers == [None, "base", "sft", "dpo", "grpo"]


def test_rates_are_percentages_and_deltas_are_coloured_by_direction(complete_report: Any) -> None:
    _, _, dom = complete_report
    em = dom.find_all("td", data_stage="grpo", data_metric="eval.exact_match")[0]
    assert em.find_all("span", **{"class": "v"})[0].text == "45.0%"
    delta = em.find_all("span")[1]
    # grpo started from sft (exact match 20%), not from dpo (15%): +25.0 pt, a good move.
    assert delta.text == "+25.0 pt" and delta.has_class("good") and delta.attrs["title"] == "vs sft"
    rep = dom.find_all("td", data_stage="sft", data_metric="behaviour.repetition")[0]
    # Repetition going down is good.
    assert rep.find_all("span")[1].has_class("good")
    stop = dom.find_all("td", data_stage="grpo", data_metric="behaviour.stop_rate")[0]
    assert stop.find_all("span")[1].has_class("bad")
    # Training numbers of different algorithms do not compare: no delta.
    loss = dom.find_all("td", data_stage="dpo", data_metric="train.loss_last")[0]
    assert len(loss.find_all("span")) == 1


def test_curves_are_embedded_pngs_for_every_stage(complete_report: Any) -> None:
    run, _, dom = complete_report
    imgs = dom.find_all("img")
    assert imgs and all(i.attrs["src"].startswith("data:image/png;base64,") for i in imgs)
    for img in imgs:
        assert base64.b64decode(img.attrs["src"].split(",", 1)[1]).startswith(PNG_MAGIC)
    by_stage: dict[str, set[str]] = {}
    for img in dom.find_all("img", data_stage=True):
        by_stage.setdefault(img.attrs["data-stage"], set()).add(img.attrs["data-plot"])
    assert by_stage["sft"] >= {"loss", "grad-norm"}
    assert by_stage["dpo"] >= {"loss", "preference-accuracy", "margins"}
    assert by_stage["grpo"] >= {"loss", "reward", "zero-std", "completion-length", "kl"}
    assert "base" not in by_stage  # the base model did not train
    assert dom.find_all("img", data_plot="metrics")  # the across-stages chart
    # No external request: every src/href is a data URI or an in-page anchor.
    for node in dom.iter():
        for attr in ("src", "href"):
            value = node.attrs.get(attr)
            if value is not None:
                assert value.startswith(("data:", "#")), value
    assert "<script" not in paths_text(run / "report.html").lower()


def paths_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_lineage_shows_the_branch(complete_report: Any) -> None:
    _, _, dom = complete_report
    tree = dom.find_all("ul", **{"class": "tree"})[0]
    sft = tree.find_all("span", data_node="sft")[0]
    sft_li = sft.parent
    assert sft_li is not None and sft_li.tag == "li"
    children = {n.attrs["data-node"] for n in sft_li.find_all("span", data_node=True)} - {"sft"}
    assert children == {"dpo", "grpo"}
    assert "from sft" in dom.find_all("th", data_stage="grpo")[0].text


def test_probe_answers_and_configs_are_escaped(complete_report: Any) -> None:
    run, _, dom = complete_report
    html_text = paths_text(run / "report.html")
    assert "<script>" not in html_text and "<b>bold</b>" not in html_text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html_text
    assert "<i>not markup</i>" not in html_text
    # The parser sees the answer as text, not as an element.
    assert not dom.find_all("script") and not dom.find_all("b") and not dom.find_all("i")


def test_markdown_has_tables_probes_and_relative_plots(complete_report: Any) -> None:
    run, paths, _ = complete_report
    md = paths.md.read_text(encoding="utf-8")
    assert md.startswith("# ladder report: demo-run")
    assert "| metric | 00 base | 01 sft | 02 dpo | 03 grpo |" in md
    assert "| exact match ↑ | 5.0% | 20.0% (+15.0 pt ✅) | 15.0% (−5.0 pt 🔻) | 45.0% (+25.0 pt ✅) |" in md
    for pid, _ in PROBES:
        assert f"### Probe `{pid}`" in md
    for link in [line for line in md.splitlines() if line.startswith("![")]:
        rel = link.split("](", 1)[1].rstrip(")")
        assert rel.startswith("plots/") and (run / rel).is_file()
    # Raw HTML from answers only ever appears inside fenced code blocks.
    in_fence = False
    fence = ""
    for line in md.splitlines():
        if line.startswith("```"):
            marker = line[: len(line) - len(line.lstrip("`"))]
            if not in_fence:
                in_fence, fence = True, marker
            elif line.strip() == fence:
                in_fence = False
            continue
        if not in_fence:
            assert "<script>" not in line and "<b>bold" not in line, line
    assert "````\n<script>alert('x')</script> & \"quotes\" | pipe ```fence```\n````" in md


def test_failed_run_names_the_failure_and_still_shows_finished_stages(failed_report: Any) -> None:
    run, paths, dom = failed_report
    alert = dom.find_all("div", data_failed_stage="grpo")
    assert len(alert) == 1
    # The run's error restates the stage's: named once, not twice.
    assert len(dom.find_all("div", data_failed_stage=True)) == 1
    assert "Traceback (most recent call last)" in alert[0].text
    assert "03 grpo" in alert[0].text and "RewardError: reward 'exact_match'" in alert[0].text
    assert dom.find_all("h1")[0].find_all("span")[0].text == "failed"
    # Finished stages keep their metrics and probe answers.
    for stage in ("base", "sft", "dpo"):
        assert dom.find_all("td", data_stage=stage, data_metric="eval.exact_match")
        assert len(dom.find_all("td", data_probe=True, data_stage=stage)) == len(PROBES)
    grpo_cells = dom.find_all("td", data_probe=True, data_stage="grpo")
    assert len(grpo_cells) == len(PROBES) and all("stage failed" in c.text for c in grpo_cells)
    # The partial trainer log of the crashed stage still gives curves (torn last line skipped).
    assert {i.attrs["data-plot"] for i in dom.find_all("img", data_stage="grpo")} >= {"loss", "reward"}
    view = load_run(run)
    assert view.stage("grpo").partial_log and len(view.stage("grpo").log) == 6
    md = paths.md.read_text(encoding="utf-8")
    assert "**Stage 03 grpo (grpo) failed.**" in md and "RewardError" in md


def test_failed_stage_curves_fall_back_to_the_resumable_trainer_state(tmp_path: Path) -> None:
    # A stage that raised has its temp dir (and trainer log) removed by atomic_dir; the
    # trainer checkpoint kept for resuming still holds TRL's log history.
    run = make_run(tmp_path, fail_last=True)
    shutil.rmtree(next(run.glob("03-grpo.tmp-*")))
    trainer = run / ".trainer" / "grpo-fp-grpo-0123456789"
    for step in (2, 4):
        state = trainer / f"checkpoint-{step}" / "trainer_state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"global_step": step, "log_history": _grpo_log(step)}))
    view = load_run(run)
    grpo = view.stage("grpo")
    assert grpo.partial_log and len(grpo.log) == 4
    assert view.relative(grpo.log_source) == ".trainer/grpo-fp-grpo-0123456789/checkpoint-4/trainer_state.json"
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    assert {i.attrs["data-plot"] for i in dom.find_all("img", data_stage="grpo")} >= {"loss", "reward"}
    assert "checkpoint-4/trainer_state.json" in dom.find_all("div", data_failed_stage="grpo")[0].text


def test_a_running_stage_shows_its_curves_so_far_and_no_failure(tmp_path: Path) -> None:
    run = make_run(tmp_path, fail_last=True)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    manifest["error"] = None
    manifest["stages"][2].update(status="running", error=None, traceback=None, finished_at=None)
    (run / "manifest.json").write_text(json.dumps(manifest))
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    assert not dom.find_all("div", data_failed_stage=True)
    assert dom.find_all("h1")[0].find_all("span")[0].text == "running"
    assert {i.attrs["data-plot"] for i in dom.find_all("img", data_stage="grpo")} >= {"loss", "reward"}
    assert all("still running" in c.text for c in dom.find_all("td", data_probe=True, data_stage="grpo"))


def test_missing_files_do_not_stop_the_report(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "manifest.json").unlink()
    (run / "02-dpo" / "probes.jsonl").unlink()
    (run / "01-sft" / "metrics.json").write_text("{not json")
    paths = write_report(run)
    dom = parse(paths.html.read_text(encoding="utf-8"))
    view = load_run(run)
    # Stages are recovered from the directories.
    assert [s.name for s in view.stages] == ["base", "sft", "dpo", "grpo"]
    assert view.stage("dpo").kind == "dpo"  # from its metrics.json
    assert len(dom.find_all("td", data_probe=True, data_stage="grpo")) == len(PROBES)
    assert all("no answer" in c.text for c in dom.find_all("td", data_probe=True, data_stage="dpo"))
    problems = dom.find_all("section", id="problems")[0].text
    assert "manifest.json is missing" in problems
    assert "02-dpo/probes.jsonl is missing" in problems
    assert "01-sft/metrics.json could not be read" in problems


def test_rewriting_replaces_stale_plots(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    stale = run / "plots" / "09-old-loss.png"
    stale.parent.mkdir()
    stale.write_bytes(PNG_MAGIC)
    paths = write_report(run)
    assert not stale.exists()
    assert {p.name for p in (run / "plots").iterdir()} == {p.name for p in paths.plots}


def test_not_a_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a ladder run directory"):
        write_report(tmp_path)


def test_nested_evaluation_shape_gets_the_same_labels_and_colours(tmp_path: Path) -> None:
    # ladder's evaluator nests evaluations (eval.verifiable.exact_match) and stages record
    # strings and dicts in stage_metrics; both must render like the flat contract keys.
    run = make_run(tmp_path)
    nested = {
        "base": {"preference": {"accuracy": 0.5, "margin": 0.0, "n": 16},
                 "verifiable": {"exact_match": 0.1, "format_rate": 0.2, "n": 20}},
        "sft": {"preference": {"accuracy": 0.625, "margin": 0.5, "n": 16},
                "verifiable": {"exact_match": 0.05, "format_rate": 0.9, "n": 20}},
    }
    for stage, block in nested.items():
        path = next(run.glob(f"0?-{stage}")) / "metrics.json"
        data = json.loads(path.read_text())
        data["eval"] = block
        if stage == "sft":
            data["stage_metrics"] = {"dataset": "demo/<sft>.jsonl", "rows": 64,
                                     "reward_weights": {"exact_match": 1.0},
                                     "rewards": {"exact_match": {"rewards/exact_match/mean_last": 0.5}},
                                     "zero_spread_warning": "90% of groups had <no> spread"}
        path.write_text(json.dumps(data))
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    row = dom.find_all("tr", data_metric="eval.verifiable.exact_match")[0]
    assert row.find_all("th")[0].text.startswith("exact match")
    cell = row.find_all("td", data_stage="sft")[0]
    assert cell.find_all("span")[0].text == "5.0%"
    assert cell.find_all("span")[1].text == "−5.0 pt" and cell.find_all("span")[1].has_class("bad")
    fmt = dom.find_all("td", data_stage="sft", data_metric="eval.verifiable.format_rate")[0]
    assert fmt.find_all("span")[1].has_class("good")
    n = dom.find_all("td", data_stage="sft", data_metric="eval.preference.n")[0]
    assert n.find_all("span")[0].text == "16"
    ds = dom.find_all("td", data_stage="sft", data_metric="stage_metrics.dataset")[0]
    assert ds.find_all("span")[0].text == "demo/<sft>.jsonl"  # escaped in the page, text here
    weight = dom.find_all("tr", data_metric="stage_metrics.reward_weights.exact_match")[0]
    assert weight.find_all("th")[0].text == "reward weights › exact match"
    last = dom.find_all("tr", data_metric="stage_metrics.rewards.exact_match.rewards/exact_match/mean_last")
    assert last[0].find_all("th")[0].text == "rewards › exact match › mean last"
    # Sample counts are not "movements": no delta.
    assert len(n.find_all("span")) == 1
    # A warning sentence is a note at the top, not a table cell.
    assert not dom.find_all("tr", data_metric="stage_metrics.zero_spread_warning")
    warning = dom.find_all("li", data_warning_stage="sft")[0]
    assert "90% of groups had <no> spread" in warning.text


def test_non_finite_and_null_values_render(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    metrics_path = run / "01-sft" / "metrics.json"
    data = json.loads(metrics_path.read_text())
    data["eval"]["preference_margin"] = math.nan
    data["eval"]["format_rate"] = None
    metrics_path.write_text(json.dumps(data))
    dom = parse(write_report(run).html.read_text(encoding="utf-8"))
    cell = dom.find_all("td", data_stage="sft", data_metric="eval.preference_margin")[0]
    assert cell.find_all("span")[0].text == "NaN"
    cell = dom.find_all("td", data_stage="sft", data_metric="eval.format_rate")[0]
    assert cell.find_all("span")[0].text == "—"


# ---------------------------------------------------------------- browser


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_report_renders_in_headless_chromium(
    complete_report: Any, tmp_path: Path
) -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install -y chromium)")
    _, paths, _ = complete_report
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
        "--v=0", f"--screenshot={shot}", "--window-size=1400,3000",
        paths.html.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file()
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    # A blank page compresses to a few KB; the report's text and charts do not.
    assert len(data) > 50_000, len(data)
    page_errors = [
        line for line in proc.stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
        or "net::ERR" in line
    ]
    assert page_errors == [], "\n".join(page_errors)
    if os.environ.get("LADDER_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LADDER_KEEP_SCREENSHOT"])
