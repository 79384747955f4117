"""Re-running a recipe: only what changed is trained; ``--from`` and ``--force`` re-train on demand.

One tiny SFT -> DPO -> GRPO recipe, run several times in one run directory:

- changing only the GRPO stage's settings re-trains GRPO alone (SFT and DPO are reused, their
  COMPLETE markers untouched);
- an unchanged recipe trains nothing;
- ``ladder run --from dpo`` re-trains DPO and GRPO, reproducing the same weights;
- ``ladder run --force`` re-trains everything, from scratch: a trainer checkpoint left by an
  earlier crash is not resumed from.

The CLI runs in this process (``ladder.cli.main``), which calls ``Pipeline.run(from_stage=...,
force=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.cli import main
from ladder.recipe import load_recipe

SFT_ROWS = [{"instruction": f"What is {a} + {b}?", "output": f"<answer>{a + b}</answer>"} for a in range(3) for b in range(3)]
PAIRS = [{"prompt": f"Tell me about item {i}.", "chosen": "Yes. Good answer.", "rejected": "No. Bad answer."}
         for i in range(8)]
PROBLEMS = [{"question": f"What is {a} + 1?", "answer": f"#### {a + 1}"} for a in range(8)]
FAST = "    trainer_kwargs: {}\n"
DIRS = ("01-sft", "02-dpo", "03-grpo")


def recipe_text(model: Path, run_dir: Path, grpo_lr: float) -> str:
    return (
        f"name: rerun\nmodel: {model}\nrun_dir: {run_dir}\nprobes: false\nstages:\n"
        "  - stage: sft\n    dataset: sft.jsonl\n    max_steps: 1\n    per_device_train_batch_size: 4\n" + FAST +
        "  - stage: dpo\n    dataset: pairs.jsonl\n    max_steps: 1\n    heldout_fraction: 0\n"
        "    per_device_train_batch_size: 4\n    gradient_accumulation_steps: 1\n" + FAST +
        "  - stage: grpo\n    dataset: problems.jsonl\n    rewards: {tag_format: 1.0}\n    num_generations: 2\n"
        "    per_device_train_batch_size: 4\n    gradient_accumulation_steps: 1\n    max_steps: 1\n"
        f"    max_completion_length: 4\n    learning_rate: {grpo_lr}\n" + FAST
    )


def markers(run_dir: Path) -> dict[str, bytes]:
    return {d: (run_dir / d / "COMPLETE").read_bytes() for d in DIRS}


def statuses(run_dir: Path) -> list[str]:
    return [s["status"] for s in json.loads((run_dir / "manifest.json").read_text())["stages"]]


def weights(run_dir: Path, stage_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / stage_dir / "model" / "model.safetensors"))


def test_only_what_changed_is_retrained(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, rows in (("sft.jsonl", SFT_ROWS), ("pairs.jsonl", PAIRS), ("problems.jsonl", PROBLEMS)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "TQDM_DISABLE"):
        monkeypatch.setenv(name, "error" if name != "TQDM_DISABLE" else "1")
    run_dir = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text(tiny_model, run_dir, 0.01))

    first = load_recipe(recipe).run()
    assert first.trained == ("sft", "dpo", "grpo")
    before = markers(run_dir)

    # Only GRPO's settings change: GRPO alone is re-trained.
    recipe.write_text(recipe_text(tiny_model, run_dir, 0.02))
    second = load_recipe(recipe).run()
    assert second.trained == ("grpo",)
    after = markers(run_dir)
    assert after["01-sft"] == before["01-sft"] and after["02-dpo"] == before["02-dpo"]
    assert after["03-grpo"] != before["03-grpo"]
    assert second.checkpoints["sft"].fingerprint == first.checkpoints["sft"].fingerprint
    assert second.final.fingerprint != first.final.fingerprint
    assert statuses(run_dir) == ["reused", "reused", "complete"]

    # Nothing changed: nothing is trained.
    assert load_recipe(recipe).run().trained == ()
    assert markers(run_dir) == after
    assert statuses(run_dir) == ["reused", "reused", "reused"]

    # --from dpo: DPO and GRPO again, SFT reused; the same inputs give the same weights.
    dpo_weights = weights(run_dir, "02-dpo")
    assert main(["run", str(recipe), "--from", "dpo"]) == 0
    capsys.readouterr()
    again = markers(run_dir)
    assert again["01-sft"] == after["01-sft"]
    assert again["02-dpo"] != after["02-dpo"] and again["03-grpo"] != after["03-grpo"]
    assert statuses(run_dir) == ["reused", "complete", "complete"]
    assert all((dpo_weights[k] == v).all() for k, v in weights(run_dir, "02-dpo").items())

    # --force: everything again, from scratch. A crashed attempt's trainer checkpoint (here a
    # complete-looking one whose optimizer state is garbage) must not be resumed from.
    stale = run_dir / ".trainer" / f"sft-{second.checkpoints['sft'].fingerprint}" / "checkpoint-1"
    stale.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (stale / name).write_bytes(b"not a tensor file")
    (stale / "trainer_state.json").write_text('{"global_step": 1, "max_steps": 5}')
    assert main(["run", str(recipe), "--force"]) == 0
    capsys.readouterr()
    forced = markers(run_dir)
    assert all(forced[d] != again[d] for d in DIRS)
    assert statuses(run_dir) == ["complete", "complete", "complete"]
    assert not stale.exists()
