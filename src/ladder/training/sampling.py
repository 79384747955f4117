"""Which rows share a training step: preference pairs of similar length, for less padding.

TRL's ``DPOTrainer`` pads each step's chosen and rejected sequences to the longest of them, and
draws the step's pairs at random: on the demo's pairs (prompt + answer 20 to 200 tokens) 45% of
the tokens a DPO step computes are padding. transformers' ``LengthGroupedSampler`` (what
``train_sampling_strategy: group_by_length`` uses) draws a random megabatch of rows, sorts it by
length and cuts it into steps, so a step holds rows of similar length and the order stays random.
It cannot be asked for through DPO's settings: it reads lengths from an ``input_ids`` column that
TRL's preference datasets do not have (it raises), and a ``length`` column would be dropped with
the other unused columns before the sampler sees it. :func:`length_grouped` gives it each pair's
length (prompt + the longer answer, what its padding is cut to) from the tokenized columns.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["length_grouped", "pair_token_lengths"]


def pair_token_lengths(dataset: Any) -> list[int]:
    """Each tokenized pair's longer sequence: prompt + the longer of chosen and rejected."""
    return [
        len(prompt) + max(len(chosen), len(rejected))
        for prompt, chosen, rejected in zip(
            dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True
        )
    ]


@functools.cache
def length_grouped(trainer_cls: type) -> type:
    """A subclass of the preference trainer ``trainer_cls`` (TRL's ``DPOTrainer``) whose training
    steps hold pairs of similar length, in an order seeded by ``data_seed`` (else ``seed``), so a
    resumed run draws the same steps."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class LengthGrouped(trainer_cls):  # type: ignore[misc, valid-type]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=pair_token_lengths(dataset),
                generator=torch.Generator().manual_seed(seed),
            )

    LengthGrouped.__name__ = LengthGrouped.__qualname__ = f"LengthGrouped{trainer_cls.__name__}"
    return LengthGrouped
