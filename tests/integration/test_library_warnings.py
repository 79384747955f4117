"""A stage run shows none of the library warnings a user cannot act on (issue 14, acceptance 5).

transformers 5.x warns (``FutureWarning``) whenever ``is_gradient_checkpointing`` is read, and
PEFT and TRL read it in every LoRA stage: SFT and DPO wrap the model (``get_peft_model``), DPO
scores its reference with the adapter off, GRPO generates its rollouts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ladder import DPO, GRPO, SFT, Pipeline

FAST = {}
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 5) for b in range(1, 5)]


def _library_future_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
            if issubclass(w.category, FutureWarning) and "site-packages" in w.filename]


def test_sft_dpo_grpo_emit_no_library_future_warning(tiny_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from ladder.training.models import load_model

    # The warning exists in this environment (else quiet_library_warnings' filter can go).
    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        get_peft_model(load_model(str(tiny_model)), LoraConfig(r=4, target_modules="all-linear"))
    assert any("is_gradient_checkpointing" in str(w.message) for w in control), (
        "transformers no longer warns about is_gradient_checkpointing: drop the filter in "
        "ladder/library_warnings.py and this control")

    stages = [
        SFT(dataset=[{"instruction": p["prompt"], "output": p["answer"]} for p in PROBLEMS], max_steps=1,
            trainer_kwargs=FAST),
        DPO(dataset=[{"prompt": p["prompt"], "chosen": p["answer"], "rejected": "No."} for p in PROBLEMS],
            max_steps=1, heldout_fraction=0.0, trainer_kwargs=FAST),
        GRPO(dataset=PROBLEMS, input="sft", rewards={"exact_match": 1.0}, num_generations=2,
             per_device_train_batch_size=4, max_completion_length=4, max_steps=1, trainer_kwargs=FAST),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning shown earlier in the session counts again
        result = Pipeline(stages, model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    assert result.trained == ("sft", "dpo", "grpo")
    assert _library_future_warnings(caught) == []
