"""The entry-point registries: discovery without import, errors, in-process registration.

Entry points are real ``importlib.metadata`` objects read from ``*.dist-info`` folders written
to a temp dir (``PathDistribution``), so package names and versions come from real metadata.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from ladder.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from ladder.registry import DISABLE_AUTOLOAD_ENV, Registry

GROUP = "ladder.stages"


def make_dist(root: Path, package: str, version: str, entry_points: dict[str, str]) -> md.Distribution:
    """Write ``<package>-<version>.dist-info`` under ``root``; return it as a real Distribution."""
    dist_info = root / f"{package.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    lines = [f"[{GROUP}]"] + [f"{name} = {value}" for name, value in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return md.PathDistribution(dist_info)


def source(*dists: md.Distribution) -> Callable[[], Iterable[md.EntryPoint]]:
    """What ``Registry(entry_points=...)`` expects: the group's entry points of these dists."""
    return lambda: [ep for d in dists for ep in d.entry_points if ep.group == GROUP]


def write_module(root: Path, name: str, body: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for the plugins' modules; they are forgotten after the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("acme_"):
            del sys.modules[name]


def test_entries_report_package_and_version_without_importing(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_lazy", "raise AssertionError('listing must not import me')\n")
    dist = make_dist(plugin_dir, "acme-stages", "2.3.1", {"zeta": "acme_lazy:Z", "alpha": "acme_lazy:A"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))

    entries = reg.entries()

    assert [e.name for e in entries] == ["alpha", "zeta"]  # sorted
    assert {(e.package, e.version, e.value) for e in entries} == {
        ("acme-stages", "2.3.1", "acme_lazy:A"),
        ("acme-stages", "2.3.1", "acme_lazy:Z"),
    }
    assert "alpha" in reg and "nope" not in reg
    assert list(reg.view()) == ["alpha", "zeta"]
    assert "acme_lazy" not in sys.modules


def test_get_imports_on_first_use_and_caches(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_ok", "LOADS = []\nclass Foo:\n    pass\nLOADS.append(1)\n")
    dist = make_dist(plugin_dir, "acme-stages", "1.0", {"foo": "acme_ok:Foo"})
    reg: Registry[type] = Registry(GROUP, "stage", entry_points=source(dist))

    first = reg.get("foo")
    second = reg.get("foo")

    assert first is second is sys.modules["acme_ok"].Foo
    assert sys.modules["acme_ok"].LOADS == [1]


def test_listing_the_real_registries_imports_no_heavy_library() -> None:
    # A fresh interpreter: this test process may already hold torch from other tests.
    code = textwrap.dedent(
        """
        import json, sys
        from ladder.registry import rewards, stages
        listed = [[e.name, e.package, e.version] for e in stages.entries() + rewards.entries()]
        heavy = sorted(m for m in ("torch", "transformers", "trl", "peft", "datasets") if m in sys.modules)
        loaded = sorted(m for m in sys.modules if m.startswith(("ladder.stages.", "ladder.rewards.")))
        print(json.dumps({"listed": listed, "heavy": heavy, "loaded": loaded}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ["sft", "ladder", md.version("ladder")] in out["listed"]
    assert out["heavy"] == []
    assert out["loaded"] == []


def test_unknown_name_lists_the_known_names(plugin_dir: Path) -> None:
    dist = make_dist(plugin_dir, "acme-stages", "1.0", {"sft": "acme_x:S", "dpo": "acme_x:D"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))

    with pytest.raises(UnknownComponentError) as info:
        reg.get("spft")

    assert info.value.known == ["dpo", "sft"]
    assert "unknown stage 'spft'" in str(info.value)
    assert "dpo, sft" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_two_packages_claiming_one_name_are_both_named(plugin_dir: Path) -> None:
    one = make_dist(plugin_dir / "a", "acme-one", "1.0", {"cpt": "acme_one:CPT", "solo": "acme_one:Solo"})
    two = make_dist(plugin_dir / "b", "acme-two", "3.0", {"cpt": "acme_two:CPT"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(one, two))

    for attempt in (lambda: reg.get("cpt"), reg.entries, lambda: reg.entry("cpt")):
        with pytest.raises(DuplicateComponentError) as info:
            attempt()
        message = str(info.value)
        assert "acme-one (acme_one:CPT)" in message and "acme-two (acme_two:CPT)" in message
    assert reg.entry("solo").package == "acme-one"  # the clash does not hide other names
    assert reg.names() == ["cpt", "solo"]


def test_one_distribution_seen_twice_is_not_a_clash(plugin_dir: Path) -> None:
    # The same installed package reachable through two sys.path entries yields its entry points twice.
    dist = make_dist(plugin_dir, "acme-stages", "1.0", {"foo": "acme_ok2:Foo"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist, dist))

    assert [e.package for e in reg.entries()] == ["acme-stages"]


def test_plugin_whose_import_fails_names_package_and_name(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_broken", "import acme_no_such_dependency\n")
    dist = make_dist(plugin_dir, "acme-broken", "0.4", {"broken": "acme_broken:Broken"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))

    assert reg.names() == ["broken"]  # listing still works
    with pytest.raises(PluginLoadError) as info:
        reg.get("broken")

    message = str(info.value)
    assert "stage 'broken'" in message
    assert "acme-broken 0.4" in message
    assert "acme_no_such_dependency" in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert isinstance(info.value, ImportError)


def test_missing_attribute_is_a_plugin_load_error(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_empty", "X = 1\n")
    dist = make_dist(plugin_dir, "acme-empty", "1.0", {"ghost": "acme_empty:Ghost"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))

    with pytest.raises(PluginLoadError, match="acme-empty"):
        reg.get("ghost")


def test_register_in_process_wins_and_can_be_removed(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_ep", "class Foo:\n    pass\n")
    dist = make_dist(plugin_dir, "acme-stages", "1.0", {"foo": "acme_ep:Foo"})
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))

    class Mine:
        pass

    assert reg.register("foo", Mine) is Mine
    reg.register("bar", Mine)
    assert reg.get("foo") is Mine
    assert reg.entry("foo").package == "__main__"
    assert reg.names() == ["bar", "foo"]
    with pytest.raises(DuplicateComponentError):
        reg.register("foo", Mine)
    reg.register("foo", int, replace=True)
    assert reg.get("foo") is int

    reg.unregister("foo")
    assert reg.get("foo") is sys.modules["acme_ep"].Foo  # the entry point shows again


def test_disable_autoload_hides_entry_points_but_not_registered(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = make_dist(plugin_dir, "acme-stages", "1.0", {"foo": "acme_x:Foo"})
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reg: Registry[object] = Registry(GROUP, "stage", entry_points=source(dist))
    reg.register("mine", dict)

    assert reg.names() == ["mine"]
    with pytest.raises(UnknownComponentError):
        reg.get("foo")

    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    reg.refresh()
    assert reg.names() == ["foo", "mine"]
