"""The Modal app for a 3-stage recipe, built without a Modal account: the plain-data description,
and the Modal objects made from it (GPU, timeout, retries, volume, secret, image layers)."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import pytest

from ladder.errors import ConfigError, MissingDependencyError
from ladder.recipe import load_recipe

modal = pytest.importorskip(
    "modal", reason="modal is not installed: pip install 'ladder[modal]' (real-Modal tests are marked `modal`)"
)

from ladder.executors.modal import (  # noqa: E402  (after the skip)
    ModalExecutor,
    ModalSettings,
    _build,
    build_app,
    describe_app,
    parse_gpu,
)

RECIPE = """\
name: three
model: Qwen/Qwen2.5-0.5B
stages:
  - stage: sft
    gpu: H100:2
    dataset: sft.jsonl
  - stage: dpo
    gpu: L40S
    dataset: pairs.jsonl
  - stage: grpo
    input: sft
    dataset: problems.jsonl
    rewards: {exact_match: 1.0}
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    for name in ("sft.jsonl", "pairs.jsonl", "problems.jsonl"):
        (tmp_path / name).write_text("{}\n")
    path = tmp_path / "three.yaml"
    path.write_text(RECIPE)
    return path


def _closure(obj: object) -> dict:
    """The values a Modal object was defined with (modal keeps them in its loader's closure)."""
    from modal._utils.async_utils import synchronizer

    raw = synchronizer._translate_in(obj)
    load = getattr(raw, "_load", None)
    if load is None or load.__closure__ is None:
        pytest.fail("modal's internals changed: update _closure() in this test")
    return dict(zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__), strict=True))


def _dockerfile(image: object) -> list[str]:
    """Every Dockerfile line of ``image``, base images first (rendered by modal itself)."""
    cells = _closure(image)
    lines: list[str] = []
    for base in (cells.get("base_images") or {}).values():
        lines += _dockerfile(base)
    if cells.get("dockerfile_function") is not None:
        lines += cells["dockerfile_function"]("2025.06").commands
    return lines


def test_description_of_a_three_stage_recipe(recipe: Path) -> None:
    _app, description = build_app(load_recipe(recipe), volume="ladder-ci", secret="hf-token", timeout=7200, retries=3, gpu="A100")
    assert description["app"] == "ladder-three"
    functions = description["functions"]
    assert list(functions) == ["stage-01-sft", "stage-02-dpo", "stage-03-grpo"]
    expected = {"stage-01-sft": ("H100:2", 2, "accelerate"), "stage-02-dpo": ("L40S", 1, "python"),
                "stage-03-grpo": ("A100", 1, "python")}  # grpo sets no gpu: the executor's default
    for name, fn in functions.items():
        gpu, count, launcher = expected[name]
        assert (fn["gpu"], fn["gpu_count"], fn["launcher"]) == (gpu, count, launcher), name
        assert fn["timeout"] == 7200
        assert fn["retries"] == {"max_retries": 3, "initial_delay": 10.0, "backoff_coefficient": 2.0}
        assert fn["volumes"] == {"/vol": "ladder-ci"} and fn["secrets"] == ["hf-token"]
    assert functions["stage-01-sft"]["accelerate_config"] == "multi_gpu"

    image = description["image"]
    assert image["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    # ladder's own dependencies, pinned to what is installed here (local labels like +cpu dropped)
    for dep in ("torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        assert f"{dep}=={md.version(dep).split('+')[0]}" in image["pip"], dep
    assert not any(p.startswith(("vllm", "modal", "pytest")) for p in image["pip"])  # extras stay out
    ladder = next(p for p in image["packages"] if p["name"] == "ladder")
    assert ladder["install"] == "local_dir" and (Path(ladder["source"]) / "pyproject.toml").is_file()
    # every installed plugin that declares ladder stages/rewards is shipped too
    plugins = {d.metadata["Name"] for d in md.distributions()
               if any(ep.group in ("ladder.stages", "ladder.rewards") for ep in d.entry_points)}
    assert plugins <= {p["name"] for p in image["packages"]}
    assert image["env"]["HF_HOME"] == "/vol/hf-cache"  # the model cache lives on the volume


def test_modal_objects_are_built_from_the_description(recipe: Path) -> None:
    settings = ModalSettings(volume="ladder-ci", secret="hf-token", timeout=7200, retries=3, gpu="A100")
    description = describe_app(load_recipe(recipe), settings)
    app, functions = _build(description)
    assert app.name == "ladder-three" and set(functions) == set(description["functions"])
    for name, fn in functions.items():
        want = description["functions"][name]
        spec = _raw(fn)._spec  # the unwrapped function's spec, in every modal 1.x (1.6 adds `_spec_`)
        assert spec.gpus == want["gpu"]
        assert {mount: vol.name for mount, vol in spec.volumes.items()} == {"/vol": "ladder-ci"}
        assert [s._name for s in map(_raw, spec.secrets)] == ["hf-token"]
        cells = _closure(fn)
        assert cells["timeout"] == 7200 and cells["retry_policy"].retries == 3
        assert cells["retry_policy"].initial_delay_ms == 10_000
    # one image for all stages: pinned dependencies, then ladder from its source folder
    lines = _dockerfile(_raw(next(iter(functions.values())))._spec.image)
    assert lines[0].startswith(f"FROM python:{sys.version_info.major}.{sys.version_info.minor}")
    pip = next(line for line in lines if "pip install" in line and "torch==" in line)
    assert f"transformers=={md.version('transformers')}" in pip and f"trl=={md.version('trl')}" in pip
    assert any(line.startswith("COPY") for line in lines)
    # ladder and every plugin installed here from a local folder, in one pip install of the copied sources
    local = [p["remote"] for p in description["image"]["packages"] if p["install"] in ("local_dir", "local_file")]
    install = next(line for line in lines if line.startswith("RUN python -m pip install /opt/ladder-src/"))
    assert install.split()[5:] == local and "/opt/ladder-src/ladder" in local
    assert "ENV HF_HOME=/vol/hf-cache" in lines


def _raw(obj: object) -> object:
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def test_no_secret_and_bad_gpus(recipe: Path) -> None:
    _app, description = build_app(load_recipe(recipe), secret=None)
    assert all(fn["secrets"] == [] for fn in description["functions"].values())
    assert parse_gpu("h100:4") == ("H100", 4) and parse_gpu("A10G") == ("A10G", 1)
    for bad in ("H100:0", "H100:9", "two GPUs", ""):
        with pytest.raises(ConfigError, match="invalid Modal GPU"):
            parse_gpu(bad)
    with pytest.raises(ConfigError, match="known settings"):
        ModalExecutor(gpus="H100")
    with pytest.raises(ConfigError, match="86400"):
        ModalExecutor(timeout=100_000)


def test_missing_modal_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modal", None)  # `import modal` now fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'ladder\[modal\]'"):
        ModalExecutor()
