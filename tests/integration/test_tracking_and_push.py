"""Where results go, on a real tiny SFT -> DPO run made by the command line:

- ``ladder run recipe.yaml stages.sft.max_steps=2 stages.1.beta=0.2`` trains with those values
  and records them in the manifest;
- ``report_to: [tensorboard, trackio]``: TensorBoard's own reader finds one run per stage under
  ``tensorboard/`` with its loss curve, the probe answers and the metrics; trackio's local
  database holds the same runs (``<run>/<stage>``) with the same scalars;
- ``ladder push`` and a recipe's ``push:`` upload the stage's ``model/`` folder and a model card
  to a loopback stand-in for the hub, and no uploaded byte holds the token or a local path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hub_stand_in import HubStandIn

FAST = {}
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 5) for b in range(1, 4)]
PROBES = {"replace": True, "items": [{"id": "sum", "prompt": "What is 2 + 2?"},
                                     {"id": "hello", "prompt": "Say hello."}]}
TOKEN = "hf_" + "Tk9" * 12
OVERRIDES = ["stages.sft.max_steps=2", "stages.1.beta=0.2"]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ladder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ladder.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tracked")
    _jsonl(tmp / "sft.jsonl", [{"instruction": p["prompt"], "output": f"<answer>{p['answer']}</answer>"}
                               for p in PROBLEMS])
    _jsonl(tmp / "pairs.jsonl", [{"prompt": p["prompt"], "chosen": f"<answer>{p['answer']}</answer>",
                                  "rejected": "I do not know."} for p in PROBLEMS])
    _jsonl(tmp / "problems.jsonl", PROBLEMS)
    recipe = {
        "name": "trk", "model": str(tiny_model), "run_dir": str(tmp / "run"),
        "report_to": ["tensorboard", "trackio"], "probes": PROBES, "generation": {"max_new_tokens": 6},
        "evals": {"preference": "pairs.jsonl", "verifiable": "problems.jsonl"},
        "stages": [
            {"stage": "sft", "dataset": "sft.jsonl", "max_steps": 5, "learning_rate": 5e-3, "trainer_kwargs": FAST},
            {"stage": "dpo", "dataset": "pairs.jsonl", "max_steps": 3, "learning_rate": 5e-3,
             "heldout_fraction": 0.0, "trainer_kwargs": FAST},
        ],
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    _ladder("run", str(tmp / "recipe.yaml"), *OVERRIDES, env={"TRACKIO_DIR": str(tmp / "trackio")})
    return {"tmp": tmp, "recipe": tmp / "recipe.yaml", "run": tmp / "run", "trackio": tmp / "trackio"}


def _stage(run_dir: Path, name: str) -> Path:
    return next(run_dir.glob(f"[0-9][0-9]-{name}"))


def _metrics(run_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((_stage(run_dir, name) / "metrics.json").read_text())


def _losses(run_dir: Path, name: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (_stage(run_dir, name) / "trainer_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_command_line_overrides_are_trained_with_and_recorded(run: dict[str, Path]) -> None:
    manifest = json.loads((run["run"] / "manifest.json").read_text())
    assert manifest["recipe"]["overrides"] == OVERRIDES
    sft, dpo = manifest["stages"]
    assert sft["config"]["max_steps"] == 2 and dpo["config"]["beta"] == 0.2
    assert manifest["recipe"]["stages"][0]["max_steps"] == 2 and manifest["recipe"]["stages"][1]["beta"] == 0.2
    assert _metrics(run["run"], "sft")["train"]["steps"] == 2 and _metrics(run["run"], "dpo")["train"]["steps"] == 3
    assert [step for step, _ in _losses(run["run"], "sft")] == [1, 2]


def _tensorboard(directory: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _text(acc: Any, tag: str) -> str:
    from tensorboard.util.tensor_util import make_ndarray

    (event,) = acc.Tensors(f"{tag}/text_summary")
    return make_ndarray(event.tensor_proto).item().decode("utf-8")


def _probes(run_dir: Path, name: str) -> list[dict[str, Any]]:
    folder = run_dir / "00-base" if name == "base" else _stage(run_dir, name)
    return [json.loads(line) for line in (folder / "probes.jsonl").read_text().splitlines()]


def test_tensorboard_has_one_run_per_stage_with_its_curve_probes_and_metrics(run: dict[str, Path]) -> None:
    root = run["run"] / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == ["base", "dpo", "sft"]  # tensorboard --logdir <run>/tensorboard
    for name in ("sft", "dpo"):
        acc = _tensorboard(root / name)
        curve = [(e.step, e.value) for e in acc.Scalars("train/loss")]
        assert curve == pytest.approx(_losses(run["run"], name))
        metrics = _metrics(run["run"], name)
        steps = metrics["train"]["steps"]
        (exact,) = acc.Scalars("ladder/eval/verifiable/exact_match")
        assert exact.step == steps and exact.value == pytest.approx(metrics["eval"]["verifiable"]["exact_match"])
        assert "exact match" in _text(acc, "ladder/metrics") and "preference accuracy" in _text(acc, "ladder/metrics")
    for name in ("base", "sft", "dpo"):
        table = _text(_tensorboard(root / name), "ladder/probes")
        assert table.startswith("| id | prompt | answer | tokens | finish |")
        for probe in _probes(run["run"], name):
            cell = probe["answer"].replace("|", "\\|").replace("\n", "<br>")
            assert f"| {probe['id']} | {probe['prompt']} | {cell} |" in table


def test_trackio_holds_the_same_runs_and_scalars(run: dict[str, Path]) -> None:
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage as S\n"
            "print(json.dumps({r: S.get_logs('trk', r) for r in ('trk/base', 'trk/sft', 'trk/dpo')}, default=str))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRACKIO_DIR": str(run["trackio"])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("sft", "dpo"):
        rows = logs[f"trk/{name}"]
        curve = [(r["train/global_step"], r["train/loss"]) for r in rows if "train/loss" in r]
        tensorboard = _tensorboard(run["run"] / "tensorboard" / name)
        assert curve == pytest.approx([(e.step, e.value) for e in tensorboard.Scalars("train/loss")])
        ladder = next(r for r in rows if "ladder/probes" in r)
        for tag in tensorboard.Tags()["scalars"]:
            if tag.startswith("ladder/"):
                assert ladder[tag] == pytest.approx(tensorboard.Scalars(tag)[-1].value), tag
        assert [r["id"] for r in ladder["ladder/probes"]["_value"]] == ["sum", "hello"]
        assert any(r["metric"] == "exact match" for r in ladder["ladder/metrics"]["_value"])
    assert [r["id"] for r in next(r for r in logs["trk/base"] if "ladder/probes" in r)["ladder/probes"]["_value"]] == [
        "sum", "hello"]


def _header(card: bytes) -> dict[str, Any]:
    return yaml.safe_load(card.decode().split("---\n", 2)[1])


def _hub_env(hub: HubStandIn) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}


def test_ladder_push_uploads_the_model_folder_and_a_card(run: dict[str, Path]) -> None:
    with HubStandIn() as hub:
        out = _ladder("push", str(run["run"]), "--repo-id", "org/trk", "--license", "apache-2.0", env=_hub_env(hub))
        model = _stage(run["run"], "dpo") / "model"
        local = {p.name: p.read_bytes() for p in model.iterdir() if p.name != "README.md"}
        files = hub.repos["org/trk"].files
        assert set(files) == {*local, "README.md"} and all(files[n] == data for n, data in local.items())
        assert "model.safetensors" in local and "chat_template.jinja" in local and "generation_config.json" in local
        meta = _header(files["README.md"])
        assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-generation"
        assert {"ladder", "sft", "dpo"} <= set(meta["tags"]) and "base_model" not in meta  # the base is local
        metrics = _metrics(run["run"], "dpo")["eval"]
        scores = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
        assert scores["exact_match"] == pytest.approx(metrics["verifiable"]["exact_match"])
        assert scores["accuracy"] == pytest.approx(metrics["preference"]["accuracy"])
        assert "| 1 | sft | sft | local file sft.jsonl |" in files["README.md"].decode()
        uploaded = hub.uploaded_bytes()
        assert TOKEN.encode() not in uploaded and str(run["tmp"]).encode() not in uploaded
        assert "org/trk" in out.stdout
    written = b"".join(p.read_bytes() for p in run["run"].rglob("*") if p.is_file())
    assert TOKEN.encode() not in written


def test_a_recipes_push_sends_every_stage_once_published(run: dict[str, Path]) -> None:
    copy = run["tmp"] / "run-copy"
    shutil.copytree(run["run"], copy)
    with HubStandIn() as hub:
        _ladder("run", str(run["recipe"]), "--run-dir", str(copy), *OVERRIDES, "push.repo_id=org/trk-{stage}",
                "push.stages=all", "push.private=true", env={**_hub_env(hub), "TRACKIO_DIR": str(run["trackio"])})
        manifest = json.loads((copy / "manifest.json").read_text())
        assert [s["status"] for s in manifest["stages"]] == ["reused", "reused"]  # pushing trains nothing
        for stage in manifest["stages"]:
            repo = hub.repos[f"org/trk-{stage['name']}"]
            assert repo.private is True and stage["push"]["repo_id"] == f"org/trk-{stage['name']}"
            assert set(repo.files) == set(stage["push"]["files"]) and "model.safetensors" in repo.files
            assert _header(repo.files["README.md"])["model-index"]
        assert TOKEN.encode() not in hub.uploaded_bytes() and str(run["tmp"]).encode() not in hub.uploaded_bytes()
    assert TOKEN.encode() not in (copy / "manifest.json").read_bytes()
