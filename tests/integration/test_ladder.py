"""The whole ladder on the tiny model: SFT -> DPO -> GRPO(input=sft) with probes, evaluations and
the report, from YAML and from Python; and the report of a run whose last stage crashed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ladder import DPO, GRPO, SFT, Pipeline
from ladder.recipe import load_recipe

FAST = {}
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 7) for b in range(1, 5)]
SFT_ROWS = [{"instruction": p["prompt"], "output": f"<answer>{p['answer']}</answer>"} for p in PROBLEMS]
PAIRS = [{"prompt": p["prompt"], "chosen": f"<answer>{p['answer']}</answer>", "rejected": "I do not know."}
         for p in PROBLEMS]
PROBES = {"replace": True, "items": [
    {"id": "sum", "prompt": "What is 2 + 2?"},
    {"id": "hello", "prompt": "Say hello."},
    {"id": "chat", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                {"role": "user", "content": "Who are you?"}]},
]}
GENERATION = {"max_new_tokens": 8}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(tmp: Path, tiny_model: Path, run_dir: Path, grpo_extra: str = "") -> Path:
    import yaml

    _write_jsonl(tmp / "sft.jsonl", SFT_ROWS)
    _write_jsonl(tmp / "pairs.jsonl", PAIRS)
    _write_jsonl(tmp / "problems.jsonl", PROBLEMS)
    recipe = {
        "name": "ladder-test", "model": str(tiny_model), "run_dir": str(run_dir),
        "probes": PROBES, "generation": GENERATION,
        "evals": {"preference": "pairs.jsonl", "verifiable": "problems.jsonl"},
        "stages": [
            {"stage": "sft", "dataset": "sft.jsonl", "max_steps": 3, "learning_rate": 5e-3, "trainer_kwargs": FAST},
            {"stage": "dpo", "dataset": "pairs.jsonl", "max_steps": 2, "learning_rate": 5e-3,
             "heldout_fraction": 0.0, "trainer_kwargs": FAST},
            {"stage": "grpo", "input": "sft", "dataset": "problems.jsonl", "max_steps": 2,
             "max_completion_length": 8, "trainer_kwargs": FAST},
        ],
    }
    text = yaml.safe_dump(recipe, sort_keys=False) + grpo_extra
    path = tmp / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def yaml_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, float]:
    tmp = tmp_path_factory.mktemp("ladder")
    start = time.perf_counter()
    result = load_recipe(_recipe(tmp, tiny_model, tmp / "run")).run()
    return result, time.perf_counter() - start


def test_the_whole_ladder_runs_in_one_call_under_three_minutes(yaml_run) -> None:
    result, seconds = yaml_run
    assert seconds < 180, f"the tiny-model ladder took {seconds:.0f} s"
    assert result.trained == ("sft", "dpo", "grpo")
    sft, dpo, grpo = (result.checkpoints[n] for n in ("sft", "dpo", "grpo"))
    assert dpo.parent.fingerprint == sft.fingerprint and grpo.parent.fingerprint == sft.fingerprint
    for ckpt in (sft, dpo, grpo):
        stage_dir = Path(ckpt.path).parent
        assert (stage_dir / "COMPLETE").is_file() and (stage_dir / "adapter").is_dir()
        assert json.loads((stage_dir / "metrics.json").read_text())["stage_metrics"]["merge_max_abs_diff"] < 1e-2


def test_python_api_gives_the_same_lineage_and_fingerprints(yaml_run, tiny_model: Path, tmp_path: Path) -> None:
    result, _ = yaml_run
    api = Pipeline(
        [SFT(dataset=SFT_ROWS, max_steps=3, learning_rate=5e-3, trainer_kwargs=FAST),
         DPO(dataset=PAIRS, max_steps=2, learning_rate=5e-3, heldout_fraction=0.0, trainer_kwargs=FAST),
         GRPO(dataset=PROBLEMS, input="sft", max_steps=2, max_completion_length=8, trainer_kwargs=FAST)],
        model=tiny_model, run_dir=tmp_path / "api", probes=False,
    )
    for name in ("sft", "dpo", "grpo"):  # same input, config and data content => same fingerprint
        yaml_stage = next(s for s in load_recipe(Path(result.run_dir).parent / "recipe.yaml").stages
                          if s.name == name)
        api_stage = next(s for s in api.stages if s.name == name)
        assert api.fingerprint(api_stage, "x") == api.fingerprint(yaml_stage, "x")
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert [s["input"] for s in manifest["stages"]] == ["base", "sft", "sft"]
    assert [c.stage for c in result.final.lineage()] == ["grpo", "sft", "base"]


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[tuple[str, str], str] = {}
        self.probes: set[tuple[str, str]] = set()
        self.plots: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "td" and "data-metric" in a and "data-value" in a:
            self.metrics[(a["data-stage"], a["data-metric"])] = a["data-value"]
        if tag == "td" and "data-probe" in a and "data-stage" in a:
            self.probes.add((a["data-probe"], a["data-stage"]))
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64,"):
            self.plots.append(a)


def _dig(metrics: dict[str, Any], path: str) -> Any:
    node: Any = metrics
    for part in path.split("."):
        node = node[part]
    return node


def test_report_shows_every_probe_every_stage_the_metrics_and_curves(yaml_run) -> None:
    result, _ = yaml_run
    html = (result.run_dir / "report.html").read_text()
    cells = _Cells()
    cells.feed(html)
    stages = ["base", "sft", "dpo", "grpo"]
    assert {(p, s) for p in ("sum", "hello", "chat") for s in stages} <= cells.probes
    dirs = {"base": "00-base", "sft": "01-sft", "dpo": "02-dpo", "grpo": "03-grpo"}
    checked = 0
    for (stage, path), raw in cells.metrics.items():
        if stage not in dirs:
            continue
        metrics = json.loads((result.run_dir / dirs[stage] / "metrics.json").read_text())
        try:
            expected = _dig(metrics, path)
        except (KeyError, TypeError):
            continue
        if isinstance(expected, dict):  # a behaviour suite's record: the cell shows its rate
            expected = expected["rate"]
        assert json.loads(raw) == pytest.approx(expected, nan_ok=True), (stage, path)
        checked += 1
    for stage in stages:  # the headline evaluations are in the table for every model
        for path in ("eval.preference.accuracy", "eval.preference.accuracy_per_token", "eval.verifiable.exact_match",
                     "eval.verifiable.format_rate", "behaviour.stop_rate", "behaviour.knowledge",
                     "behaviour.instructions", "behaviour.refusal", "behaviour.over_refusal", "behaviour.arithmetic"):
            assert (stage, path) in cells.metrics
    assert checked >= 40
    for stage in ("sft", "dpo", "grpo"):
        assert any(p.get("data-stage") == stage for p in cells.plots), f"no training curve for {stage}"
    assert (result.run_dir / "report.md").is_file()


def test_report_of_a_run_whose_last_stage_crashed_names_the_failure(tiny_model: Path, tmp_path: Path) -> None:
    from ladder import rewards

    run_dir = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model, run_dir)
    text = recipe.read_text().replace("max_completion_length: 8", "max_completion_length: 8\n  rewards: [tests_boom]")
    recipe.write_text(text)
    # a reward that passes pre-flight's sample call on gold answers but raises on real completions
    plugin = tmp_path / "boom_reward.py"
    plugin.write_text(
        "def tests_boom(completions, answer, **kw):\n"
        "    if any('<answer>' not in str(c) for c in completions):\n"
        "        raise ZeroDivisionError('the reward crashed on a real completion')\n"
        "    return [1.0 for _ in completions]\n"
    )
    runner = tmp_path / "run_it.py"
    runner.write_text(
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from boom_reward import tests_boom\n"
        "from ladder import rewards\n"
        "rewards.register('tests_boom', tests_boom)\n"
        "from ladder.cli import main\n"
        "sys.exit(main(['run', sys.argv[2]]))\n"
    )
    proc = subprocess.run([sys.executable, str(runner), str(tmp_path), str(recipe)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.count("error: ") == 1 and "Traceback" not in proc.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert [s["status"] for s in manifest["stages"]] == ["complete", "complete", "failed"]
    assert not (run_dir / "03-grpo").exists()
    (run_dir / "report.html").unlink()
    report = subprocess.run([sys.executable, "-m", "ladder.cli", "report", str(run_dir)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    html = (run_dir / "report.html").read_text()
    assert "failed" in html and "tests_boom" in html and "crashed on a real completion" in html
    cells = _Cells()
    cells.feed(html)
    assert ("sum", "sft") in cells.probes and ("sum", "dpo") in cells.probes
    del rewards
