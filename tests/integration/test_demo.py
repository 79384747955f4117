"""`ladder demo`: the exported recipe is an ordinary recipe; a shortened demo runs on the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.demo import RECIPE, export
from ladder.recipe import load_recipe


def test_export_writes_an_ordinary_recipe_with_its_data(tmp_path: Path, tiny_model: Path) -> None:
    target = export(tmp_path / "mine")
    assert target.read_text() == RECIPE.read_text()
    assert sorted(p.name for p in (tmp_path / "mine" / "data").iterdir()) == sorted(
        p.name for p in (RECIPE.parent / "data").glob("*.jsonl")
    )
    # the copy loads like any recipe, its data paths resolving to the copied files (model swapped
    # for the tiny one: no download here)
    pipeline = load_recipe(target, model=str(tiny_model), run_dir=str(tmp_path / "run"))
    assert [s.kind for s in pipeline.stages] == ["sft", "dpo", "grpo"]
    assert pipeline.stages[0].config.dataset == str((tmp_path / "mine" / "data" / "sft_train.jsonl").resolve())


@pytest.mark.slow
def test_shortened_demo_runs_end_to_end_on_the_real_model(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "ladder.cli", "demo", "--quick", "2", "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report:" in proc.stdout and "final checkpoint:" in proc.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [s["status"] for s in manifest["stages"]] == ["complete"] * 3
    for d in ("00-base", "01-sft", "02-dpo", "03-grpo"):
        metrics = json.loads((run_dir / d / "metrics.json").read_text())
        assert set(metrics["eval"]) == {"preference", "verifiable"}
        probes = (run_dir / d / "probes.jsonl").read_text().splitlines()
        assert len(probes) == 7
    html = (run_dir / "report.html").read_text()
    assert "03-grpo" in html or "grpo" in html
    # a second run reuses everything: the cached model and every complete stage
    again = subprocess.run(
        [sys.executable, "-m", "ladder.cli", "demo", "--quick", "2", "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0
    assert [s["status"] for s in json.loads((run_dir / "manifest.json").read_text())["stages"]] == ["reused"] * 3
