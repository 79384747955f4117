"""DPO's ``group_by_length``: TRL's trainer draws steps of pairs of similar length, so less of
each step is padding; every pair is still drawn once per epoch, in an order fixed by the seed."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest

from ladder import DPO, Pipeline

LONG = " ".join(["This answer goes on for a good while about the topic."] * 6)


def mixed_pairs(n: int) -> list[dict]:
    """Half the pairs short, half long, shuffled: random steps mix both and pad the short ones."""
    rng = random.Random(0)
    rows = [
        {"prompt": f"Question {i}?", "chosen": "Yes." if i % 2 else f"Yes. {LONG}",
         "rejected": "No." if i % 2 else f"No. {LONG}"}
        for i in range(n)
    ]
    rng.shuffle(rows)
    return rows


def context(tmp_path: Path, seed: int = 0) -> Any:
    from ladder.stage import StageContext

    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                        trainer_dir=tmp_path / "t", seed=seed)


def build(tiny_model: Path, tmp_path: Path, *, grouped: bool, seed: int = 0) -> Any:
    from ladder.checkpoint import Checkpoint

    stage = DPO(dataset=mixed_pairs(48), heldout_fraction=0.0, max_steps=1, per_device_train_batch_size=4,
                gradient_accumulation_steps=1, group_by_length=grouped, save_steps=0)
    trainer, _ = stage.build_trainer(Checkpoint.base(tiny_model), context(tmp_path, seed))
    return trainer


def padding_share(trainer: Any) -> float:
    """Share of the tokens of one epoch's padded batches that are padding."""
    real = padded = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real += int(mask.sum())
        padded += mask.numel()
    return 1 - real / padded


def test_grouped_steps_hold_pairs_of_similar_length(tiny_model: Path, tmp_path: Path) -> None:
    plain = build(tiny_model, tmp_path / "plain", grouped=False)
    grouped = build(tiny_model, tmp_path / "grouped", grouped=True)
    assert type(grouped).__name__ == "LengthGroupedDPOTrainer"
    plain_share, grouped_share = padding_share(plain), padding_share(grouped)
    # 4 random pairs of 48 hold both lengths nearly always. The sampler sorts megabatches of 12
    # pairs (48 // 16) by length and cuts each into 3 steps: the step where a megabatch's long
    # and short pairs meet is mixed, the others hold one length.
    assert plain_share > 0.4
    assert grouped_share < plain_share / 2


def test_grouped_order_is_a_seeded_permutation(tiny_model: Path, tmp_path: Path) -> None:
    first = list(build(tiny_model, tmp_path / "a", grouped=True)._get_train_sampler())
    again = list(build(tiny_model, tmp_path / "b", grouped=True)._get_train_sampler())
    other = list(build(tiny_model, tmp_path / "c", grouped=True, seed=1)._get_train_sampler())
    assert sorted(first) == list(range(48))  # every pair once per epoch
    assert first == again  # the run's seed fixes the order (a resumed run draws the same steps)
    assert other != first and sorted(other) == list(range(48))


def test_a_grouped_dpo_stage_trains_and_publishes(tiny_model: Path, tmp_path: Path) -> None:
    stage = DPO(dataset=mixed_pairs(40), heldout_fraction=0.2, learning_rate=5e-3, max_steps=3,
                per_device_train_batch_size=4, gradient_accumulation_steps=1, group_by_length=True, save_steps=0)
    result = Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    metrics = json.loads((result.run_dir / "01-dpo" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    assert metrics["stage_metrics"]["heldout_after"]["n"] == 8


def test_group_by_length_must_be_a_bool() -> None:
    with pytest.raises((TypeError, ValueError)):
        attrs.evolve(DPO().config, group_by_length="yes")


def test_transformers_own_length_grouping_is_refused_before_training(tiny_model: Path, tmp_path: Path) -> None:
    from ladder import ValidationError

    stage = DPO(dataset=mixed_pairs(20), max_steps=1, trainer_kwargs={"train_sampling_strategy": "group_by_length"})
    with pytest.raises(ValidationError) as info:
        Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    assert "train_sampling_strategy 'group_by_length'" in str(info.value)
    assert "group_by_length: true" in str(info.value)
    assert not (tmp_path / "run" / "01-dpo").exists()  # nothing trained, nothing published
