"""A tiny SFT -> DPO -> GRPO pipeline, run in a child process so a test can SIGKILL it at any moment.

``python tests/integration/crash_pipeline.py --model DIR --run-dir DIR --result FILE`` runs the
pipeline once (probes off, a trainer checkpoint after every step) and writes what the run did to
``FILE`` as JSON: the stages trained in this call, each stage's fingerprint, the final path.
``--grpo-lr``, ``--force`` and ``--from STAGE`` vary the run.

``python tests/integration/crash_pipeline.py --serve`` is a fork server for the crash test: it
imports torch, transformers and TRL once (about 6 s, most of a tiny run's wall time), then for
every JSON line on stdin (the same settings as the flags, plus ``kill_after`` seconds) forks a
child that runs the pipeline, SIGKILLs it after ``kill_after`` seconds if it is still running,
and prints ``pid N`` when the child starts and ``exit N STATUS killed|done`` when it is gone. The
delay thus falls in the pipeline's own work rather than in the imports.

Used by ``tests/integration/test_crash.py``; importing it does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

SFT_ROWS = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": f"{a} + {b} = {a + b}. <answer>{a + b}</answer>"}
    for a in range(4)
    for b in range(4)
]
DPO_ROWS = [
    {"prompt": f"Question {i}: tell me about item {i}.", "chosen": "Yes. Good answer.", "rejected": "No. Bad answer."}
    for i in range(16)
]
GRPO_ROWS = [
    {"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"} for a in range(4) for b in range(4)
]
# Activation checkpointing only slows a tiny model down on a CPU.
FAST = {}


def digit_share(completions: list[Any], **kwargs: Any) -> list[float]:
    """Share of a completion's characters that are digits: a reward with spread on a random model."""
    from ladder.rewards import completion_text

    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def build(model: str, run_dir: str, *, grpo_lr: float = 1e-2) -> Any:
    """The pipeline: every stage saves a resumable trainer checkpoint after every step."""
    from ladder import DPO, GRPO, SFT, Pipeline

    stages = [
        SFT(dataset=SFT_ROWS, max_steps=4, learning_rate=5e-3, per_device_train_batch_size=4, save_steps=1,
            trainer_kwargs=FAST),
        DPO(dataset=DPO_ROWS, max_steps=3, learning_rate=5e-3, per_device_train_batch_size=4,
            gradient_accumulation_steps=1, heldout_fraction=0.0, save_steps=1, trainer_kwargs=FAST),
        GRPO(dataset=GRPO_ROWS, rewards=[digit_share], num_generations=2, max_completion_length=6,
             learning_rate=grpo_lr, per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=3,
             save_steps=1, temperature=0.5, trainer_kwargs=FAST),
    ]
    return Pipeline(stages, model=model, run_dir=run_dir, probes=False, name="crash")


def run_once(model: str, run_dir: str, result: str, *, grpo_lr: float = 1e-2, force: bool = False,
             from_stage: str | None = None) -> None:
    """Run the pipeline; write what it did to ``result`` (JSON)."""
    from ladder.atomic import atomic_write_json

    done = build(model, run_dir, grpo_lr=grpo_lr).run(force=force, from_stage=from_stage)
    atomic_write_json(
        Path(result),
        {
            "trained": list(done.trained),
            "fingerprints": {name: ckpt.fingerprint for name, ckpt in done.checkpoints.items()},
            "final": done.final.path,
            "final_fingerprint": done.final.fingerprint,
        },
    )


def _preload() -> None:
    """Import what the stages import, so forked children start training at once."""
    import torch

    torch.set_num_threads(1)  # the same arithmetic in every run, and no fight over shared cores
    import datasets  # noqa: F401
    import peft  # noqa: F401
    from trl import DPOTrainer, GRPOTrainer, SFTTrainer  # noqa: F401

    import ladder.pipeline  # noqa: F401
    import ladder.stages.dpo  # noqa: F401
    import ladder.stages.grpo  # noqa: F401
    import ladder.stages.sft  # noqa: F401
    import ladder.training.fit  # noqa: F401
    import ladder.training.publish  # noqa: F401


def serve() -> None:
    """Fork one child per JSON line on stdin; report ``pid N`` and ``exit N STATUS`` on stdout."""
    import sys
    import traceback

    _preload()
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run, then leave without running the parent's cleanup
            os.dup2(2, 1)  # stdout is the protocol's; anything the run prints goes to stderr
            code = 0
            try:
                run_once(job["model"], job["run_dir"], job["result"], grpo_lr=job.get("grpo_lr", 1e-2),
                         force=job.get("force", False), from_stage=job.get("from"))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        status, killed = _wait(pid, job.get("kill_after"))
        print(f"exit {pid} {status} {'killed' if killed else 'done'}", flush=True)


def _wait(pid: int, kill_after: float | None) -> tuple[int, bool]:
    """Wait for the child; SIGKILL it after ``kill_after`` seconds if it is still running.

    The child is killed here, by its parent, because only the parent knows the pid still names
    that child: until it is reaped the pid cannot be reused by another process.
    """
    import signal
    import time

    deadline = None if kill_after is None else time.monotonic() + kill_after
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if deadline is not None and time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return status, True
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="fork server: one run per JSON line on stdin")
    parser.add_argument("--model")
    parser.add_argument("--run-dir")
    parser.add_argument("--result")
    parser.add_argument("--grpo-lr", type=float, default=1e-2)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--from", dest="from_stage")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if not (args.model and args.run_dir and args.result):
        parser.error("--model, --run-dir and --result are required (or --serve)")
    _preload()
    run_once(args.model, args.run_dir, args.result, grpo_lr=args.grpo_lr, force=args.force,
             from_stage=args.from_stage)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
