"""What differs between the trainer ladder builds and the plain TRL script's, for one stage.

    PYTHONPATH=$PWD/src python bench/peers_diff.py [sft|dpo]

Builds both trainers from `bench/peers_setup.py`'s settings without training them: ladder's
through the stage's own ``build_trainer`` plus what :func:`ladder.training.fit.fit` adds (its log
callback, the printers removed), TRL's through `bench/peers_trl.py`. Prints every
``TrainingArguments`` value that differs, the callbacks, the collators, and whether the first
training batch is the same tensors (where timing cannot tell, on a loaded machine, whether
ladder's training part does more work than TRL's, this says whether it is given more).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers_setup as setup  # noqa: E402

# Paths, names and values that differ by construction and change no computation.
_IGNORED = {"output_dir", "logging_dir", "run_name", "hub_token", "_n_gpu"}


def ladder_trainer(stage: str, model: str, data_dir: Path, work: Path) -> Any:
    from ladder.checkpoint import Checkpoint
    from ladder.recipe import pipeline_from_dict
    from ladder.stage import StageContext
    from ladder.training.args import log_callback, quiet_trainer

    pipeline = pipeline_from_dict(setup.ladder_recipe(stage, model=model, data_dir=data_dir, run_dir=work / "run"))
    (built,) = pipeline.stages
    ctx = StageContext(run_dir=work, work_dir=work / "w", final_dir=work / "f", trainer_dir=work / "t",
                       stage_name=stage, stage_kind=stage, seed=pipeline.seed)
    (work / "w").mkdir(parents=True, exist_ok=True)
    trainer, _facts = built.build_trainer(Checkpoint.base(model), ctx)
    trainer.add_callback(log_callback(ctx))  # what fit() adds before training
    return quiet_trainer(trainer)


def first_batch(trainer: Any) -> dict[str, Any]:
    return next(iter(trainer.get_train_dataloader()))


def main(stage: str = "sft") -> int:
    import ladder.demo
    from ladder.demo.model import demo_model_path

    import peers_trl

    model = str(demo_model_path())
    data_dir = Path(ladder.demo.__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = ladder_trainer(stage, model, data_dir, work / "ladder")
        theirs = peers_trl.build_trainer(setup.trl_spec(stage, model=model, data_dir=data_dir, out_dir=work / "trl"))
        a, b = ours.args.to_dict(), theirs.args.to_dict()
        print(f"{stage}: TrainingArguments that differ (ladder | TRL script):")
        for key in sorted(set(a) | set(b)):
            if key not in _IGNORED and a.get(key) != b.get(key):
                print(f"  {key}: {a.get(key)!r} | {b.get(key)!r}")
        names = lambda t: [type(c).__name__ for c in t.callback_handler.callbacks]  # noqa: E731
        print(f"callbacks: {names(ours)} | {names(theirs)}")
        print(f"collator: {type(ours.data_collator).__name__} | {type(theirs.data_collator).__name__}")
        print(f"model: {type(ours.model).__name__}, trainable "
              f"{sum(p.numel() for p in ours.model.parameters() if p.requires_grad)} | {type(theirs.model).__name__}, "
              f"trainable {sum(p.numel() for p in theirs.model.parameters() if p.requires_grad)}")
        x, y = first_batch(ours), first_batch(theirs)
        for key in sorted(set(x) | set(y)):
            u, v = x.get(key), y.get(key)
            same = u is not None and v is not None and u.shape == v.shape and bool((u == v).all())
            shapes = f"{tuple(u.shape) if u is not None else None} | {tuple(v.shape) if v is not None else None}"
            differ = "" if same or u is None or v is None or u.shape != v.shape else f", {int((u != v).sum())} differ"
            print(f"  batch[{key!r}]: {'same' if same else 'different'} ({shapes}{differ})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
