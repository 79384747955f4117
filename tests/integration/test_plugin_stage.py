"""The example stage plugin ``plugins/ladder-cpt``, installed for real, found by name, trained.

The plugin is pip-installed (offline, no dependencies, no build isolation) into a temp folder
that is put on ``PYTHONPATH`` of child interpreters, so the system site-packages are never
touched and ladder discovers it exactly as it would a package from PyPI: through its
``ladder.stages`` entry point in the installed metadata.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "ladder-cpt"
PLUGIN_VERSION = "0.1.0"

CORPUS = """\
The capital of France is Paris. The capital of Italy is Rome.

A recipe for bread: mix flour, water, yeast and salt,
then bake.

Explain photosynthesis: plants turn sunlight, water and air into sugar.


one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9

Question: how many apples? Answer: 12 apples in total.
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target`` of the plugin; returns the folder to put on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("plugin")
    # Build from a copy: pip builds in-tree and would leave build/ and *.egg-info in the repo.
    src = shutil.copytree(PLUGIN, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-cache-dir", "--quiet", "--target", str(target), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, f"pip install of the plugin failed:\n{proc.stdout}\n{proc.stderr}"
    return target


def run_python(site: Path, code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees the installed plugin."""
    env = dict(os.environ)
    env.pop("LADDER_DISABLE_PLUGIN_AUTOLOAD", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=site.parent)


def last_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, f"child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_installed_plugin_is_listed_with_its_package_without_import(site: Path) -> None:
    out = last_json(run_python(site, """
        import json, sys
        from ladder.registry import stages
        entry = stages.entry("cpt")
        print(json.dumps({"names": stages.names(), "entry": [entry.name, entry.package, entry.version, entry.value],
                          "imported": sorted(m for m in ("ladder_cpt", "torch") if m in sys.modules)}))
    """))

    assert out["entry"] == ["cpt", "ladder-cpt", PLUGIN_VERSION, "ladder_cpt:CPT"]
    assert {"cpt", "sft"} <= set(out["names"])
    assert out["imported"] == []


def test_ladder_stages_command_lists_the_plugin(site: Path) -> None:
    proc = run_python(site, "import sys; from ladder.cli import main; sys.exit(main(['stages']))")

    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if " cpt " in line]
    assert len(rows) == 1 and "ladder-cpt" in rows[0] and PLUGIN_VERSION in rows[0], proc.stdout


def test_recipe_names_the_plugin_stage_and_preflight_checks_its_rows(site: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"txt": "typo"}\n{"text": 3}\n{"text": "  "}\n')
    (tmp_path / "recipe.yaml").write_text("model: some/model\nstages:\n  - stage: cpt\n    dataset: bad.jsonl\n")
    out = last_json(run_python(site, """
        import json, sys
        from ladder.errors import ValidationError
        from ladder.recipe import load_recipe
        pipeline = load_recipe(sys.argv[1])
        stage = pipeline.stages[0]
        try:
            pipeline.validate()
            problems = []
        except ValidationError as exc:
            problems = exc.problems
        print(json.dumps({"cls": f"{type(stage).__module__}.{type(stage).__name__}", "problems": problems}))
    """, str(tmp_path / "recipe.yaml")))

    assert out["cls"] == "ladder_cpt.cpt.CPT"
    source = str(tmp_path / "bad.jsonl")
    assert out["problems"] == [
        f"stage 'cpt': {source}, row 1, field 'text': missing field; CPT rows need their raw text in `text`",
        f"stage 'cpt': {source}, row 2, field 'text': expected a string, got int",
        f"stage 'cpt': {source}, row 3, field 'text': empty text; remove the row",
    ]


TRAIN = """
    import hashlib, json, math, sys
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from ladder import Pipeline
    from ladder.registry import stages

    base, corpus, run_dir = sys.argv[1:4]
    digest = lambda: hashlib.sha256((Path(base) / "model.safetensors").read_bytes()).hexdigest()
    before_digest = digest()
    CPT = stages.get("cpt")  # by name, as a recipe's `- stage: cpt` does
    stage = CPT(dataset=corpus, max_steps=3, per_device_train_batch_size=2, max_length=32,
                learning_rate=1e-2, save_steps=0)
    result = Pipeline([stage], model=base, run_dir=run_dir, probes=False).run()

    before = load_file(str(Path(base) / "model.safetensors"))
    after = load_file(str(Path(result.final.path) / "model.safetensors"))
    print(json.dumps({
        "cls": f"{CPT.__module__}.{CPT.__qualname__}",
        "final": result.final.to_dict(),
        "parent_path": result.final.parent.path,
        "trained": list(result.trained),
        "changed": sorted(k for k in before if not torch.equal(before[k], after[k])),
        "same_keys": sorted(before) == sorted(after),
        "base_untouched": digest() == before_digest,
    }))
"""


def test_pipeline_trains_the_plugin_stage_into_a_merged_checkpoint(
    site: Path, tiny_model: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    run_dir = tmp_path / "run"

    out = last_json(run_python(site, TRAIN, str(tiny_model), str(corpus), str(run_dir)))

    assert out["cls"] == "ladder_cpt.cpt.CPT"
    assert out["trained"] == ["cpt"]
    stage_dir = run_dir / "01-cpt"
    assert out["final"]["path"] == str(stage_dir / "model")
    assert out["final"]["adapter_path"] == str(stage_dir / "adapter")
    assert out["final"]["lineage"] == ["cpt", "base"] and out["parent_path"] == str(tiny_model)
    # The merge changed exactly the LoRA targets (q_proj, v_proj in both layers), nothing else.
    assert out["same_keys"] and out["base_untouched"]
    assert len(out["changed"]) == 4, out["changed"]
    assert all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in out["changed"]), out["changed"]

    assert (stage_dir / "COMPLETE").is_file()
    assert (stage_dir / "adapter" / "adapter_config.json").is_file()
    assert (stage_dir / "model" / "config.json").is_file()
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["kind"] == "cpt" and metrics["train"]["steps"] == 3
    assert metrics["stage_metrics"]["documents"] == 5  # blank-line separated, the double blank line included
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    assert math.isfinite(metrics["train"]["loss_first"]) and metrics["train"]["train_tokens"] > 0
    log = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"][0]["package"] == f"ladder-cpt=={PLUGIN_VERSION}"


def test_text_file_and_rows_are_the_same_data(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from ladder import DataError, Pipeline
    from ladder_cpt import CPT, load_texts

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    texts, label, problems = load_texts(corpus)
    assert (len(texts), label, problems) == (5, str(corpus), [])
    assert texts[1] == "A recipe for bread: mix flour, water, yeast and salt,\nthen bake."
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(DataError, match="no text in the file") as info:
        load_texts(tmp_path / "blank.txt")
    assert info.value.source == str(tmp_path / "blank.txt")

    pipeline = Pipeline([CPT(dataset=str(corpus))], model="unused")
    from_file = pipeline.fingerprint(CPT(dataset=str(corpus)), "in")
    from_rows = pipeline.fingerprint(CPT(dataset=[{"text": t} for t in texts]), "in")
    edited = pipeline.fingerprint(CPT(dataset=[{"text": t} for t in [*texts[:-1], texts[-1] + "!"]]), "in")
    assert from_file == from_rows != edited


ACCELERATE = """
    import json, sys
    from pathlib import Path

    from ladder import Pipeline
    from ladder.executors.accelerate import AccelerateExecutor
    from ladder.registry import stages

    base, corpus, run_dir = sys.argv[1:4]
    CPT = stages.get("cpt")
    stage = CPT(dataset=corpus, max_steps=2, per_device_train_batch_size=1, max_length=32, learning_rate=1e-2,
                save_steps=0, trainer_kwargs={})
    result = Pipeline([stage], model=base, run_dir=run_dir, probes=False,
                      executor=AccelerateExecutor(num_processes=2, cpu=True)).run()
    print(json.dumps({"final": result.final.to_dict(), "trained": list(result.trained)}))
"""


@pytest.mark.slow
def test_the_plugin_stage_under_accelerate_with_two_cpu_processes(site: Path, tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    """The plugin gets multi-process publication right through ``ladder.sdk.fit``: the main process
    gathers, merges and verifies; the other writes nothing into the published directory."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    run_dir = tmp_path / "run"

    out = last_json(run_python(site, ACCELERATE, str(tiny_model), str(corpus), str(run_dir), timeout=900))

    stage_dir = run_dir / "01-cpt"
    assert out["trained"] == ["cpt"] and out["final"]["path"] == str(stage_dir / "model")
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3  # merged on the main process and verified
    log = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]  # one writer
    assert not list(stage_dir.rglob("rank-*"))
