"""What a fingerprint is made of: a local base model by its content, and the versions of the
packages providing the rewards a stage names."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.checkpoint import Checkpoint
from ladder.fingerprints import base_checkpoint, component_versions, stage_fingerprint
from ladder.registry import rewards

PROBLEMS = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(4)]


def write_model(folder: Path, value: float) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((4, 4), value, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def test_a_local_base_model_is_fingerprinted_by_its_content(tmp_path: Path) -> None:
    original = base_checkpoint(write_model(tmp_path / "base", 1.0))
    moved = shutil.move(str(tmp_path / "base"), str(tmp_path / "elsewhere"))
    assert base_checkpoint(moved).fingerprint == original.fingerprint  # moving the folder retrains nothing

    write_model(Path(moved), 2.0)  # same names, shapes and sizes: new weights
    assert base_checkpoint(moved).fingerprint != original.fingerprint
    write_model(Path(moved), 1.0)
    assert base_checkpoint(moved).fingerprint == original.fingerprint
    (Path(moved) / "tokenizer.json").write_text('{"version": "2.0"}')
    assert base_checkpoint(moved).fingerprint != original.fingerprint  # the tokenizer changed too

    hub = base_checkpoint("org/model", revision="main")
    assert hub.fingerprint == Checkpoint.base("org/model", revision="main").fingerprint


def write_reward_plugin(site: Path, version: str) -> None:
    for old in site.glob("ladder_reward_shout-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"ladder_reward_shout-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ladder-reward-shout\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[ladder.rewards]\nshout = ladder_reward_shout:shout\n")


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    write_reward_plugin(site, "1.0")
    monkeypatch.syspath_prepend(str(site))
    rewards.refresh()
    yield site
    monkeypatch.undo()
    rewards.refresh()


def test_a_reward_plugins_version_is_in_the_fingerprint(plugin_site: Path) -> None:
    from ladder.stages.grpo import GRPO

    stage = GRPO(dataset=PROBLEMS, rewards={"shout": 1.0, "exact_match": 0.5})
    assert component_versions(stage) == {"reward:shout": "ladder-reward-shout==1.0",
                                         "reward:exact_match": rewards.entry("exact_match").package + "=="
                                         + rewards.entry("exact_match").version}
    first = stage_fingerprint(stage, "input", 0)
    assert stage_fingerprint(stage, "input", 0) == first

    write_reward_plugin(plugin_site, "1.1")
    rewards.refresh()
    assert component_versions(stage)["reward:shout"] == "ladder-reward-shout==1.1"
    assert stage_fingerprint(stage, "input", 0) != first

    other = GRPO(dataset=PROBLEMS, rewards={"exact_match": 1.0})
    assert "reward:shout" not in component_versions(other)
