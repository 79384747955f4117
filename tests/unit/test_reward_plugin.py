"""The example reward plugin (plugins/ladder-reward-brevity), found through a real entry point.

Installing the package is another test's job; here its real ``EntryPoint`` (read from its own
pyproject.toml) is fed to a ``Registry`` with its source directory on ``sys.path``.
"""

from __future__ import annotations

import doctest
import importlib.metadata as md
import pickle
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import ladder.registry
from ladder.errors import DuplicateComponentError
from ladder.registry import REWARDS_GROUP, Registry
from ladder.rewards import check_reward_on_sample, required_columns, resolve_rewards

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "ladder-reward-brevity"
MODULE = "ladder_reward_brevity"


def declared_entry_points() -> list[md.EntryPoint]:
    """The plugin's ``ladder.rewards`` entry points, exactly as its pyproject declares them."""
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))
    declared = meta["project"]["entry-points"][REWARDS_GROUP]
    return [md.EntryPoint(name=name, value=value, group=REWARDS_GROUP) for name, value in declared.items()]


@pytest.fixture
def plugin_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    monkeypatch.delenv(ladder.registry.DISABLE_AUTOLOAD_ENV, raising=False)
    sys.modules.pop(MODULE, None)
    yield Registry(REWARDS_GROUP, "reward", entry_points=declared_entry_points)
    sys.modules.pop(MODULE, None)


def test_pyproject_declares_the_brevity_entry_point() -> None:
    assert [(ep.name, ep.value) for ep in declared_entry_points()] == [("brevity", f"{MODULE}:brevity")]
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["name"] == "ladder-reward-brevity"
    assert meta["project"]["dependencies"] == []  # a reward plugin needs nothing from ladder


def test_listed_without_import_then_loaded_on_get(plugin_registry: Registry) -> None:
    assert plugin_registry.names() == ["brevity"]
    assert plugin_registry.entry("brevity").value == f"{MODULE}:brevity"
    assert MODULE not in sys.modules  # discovery imports nothing

    brevity = plugin_registry.get("brevity")
    module = sys.modules[MODULE]
    assert brevity is module.brevity
    assert plugin_registry.get("brevity") is brevity  # imported once
    assert brevity.__name__ == "brevity"
    assert brevity(["short answer", "word " * 75, [{"role": "assistant", "content": "ok"}]]) == [1.0, 0.5, 1.0]
    assert required_columns(brevity) == []


def test_plugin_reward_goes_through_the_runtime(plugin_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    # resolve_rewards looks names up in ladder.registry.rewards: point it at the plugin's view.
    monkeypatch.setattr(ladder.registry, "rewards", plugin_registry)
    funcs, weights = resolve_rewards({"brevity": 0.2})
    assert [f.__name__ for f in funcs] == ["brevity"] and weights == [0.2]
    assert funcs[0](completions=["a b c"], prompts=["q"], trainer_state=None) == [1.0]
    assert check_reward_on_sample(funcs[0], "brevity", [{"prompt": "q", "answer": "4"}]) == [1.0]


def test_name_clash_with_another_package_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    clash = md.EntryPoint(name="brevity", value="other_pkg:brevity", group=REWARDS_GROUP)
    registry = Registry(REWARDS_GROUP, "reward", entry_points=lambda: [*declared_entry_points(), clash])
    with pytest.raises(DuplicateComponentError, match="brevity"):
        registry.get("brevity")


def test_plugin_doctests_and_factory(plugin_registry: Registry) -> None:
    plugin_registry.get("brevity")
    module = sys.modules[MODULE]
    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0
    tight = module.make_brevity(max_words=3, name="brevity3")
    clone = pickle.loads(pickle.dumps(tight))
    assert clone.__name__ == "brevity3" and clone(["a b c d"]) == tight(["a b c d"]) == [pytest.approx(2 / 3)]
    with pytest.raises(ValueError):
        module.make_brevity(max_words=0)
