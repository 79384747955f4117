"""Crash test: SIGKILL a tiny SFT -> DPO -> GRPO run at random moments, re-run it, check nothing
was lost or half-done.

Each trial starts the pipeline in a fresh run directory (a child forked by
``crash_pipeline.py --serve``), kills it with SIGKILL after a delay drawn from a seeded RNG over an
uninterrupted run's duration, inspects what the kill left, and runs the pipeline again. It checks:

- every directory holding a COMPLETE marker is whole: the checkpoint it names loads (weights,
  config, tokenizer), its adapter and metrics are there; nothing else looks published;
- every re-run completes; the stages that were complete before it are reused, not re-trained
  (``RunResult.trained``, the manifest's ``reused`` status, their COMPLETE markers untouched);
- the final checkpoint has the fingerprint of an uninterrupted run, and every stage's weights
  equal (or, after a resume from a trainer checkpoint, are close to) the uninterrupted run's;
- each published trainer log has every step exactly once, a resumed stage's included.

``test_resume_never_uses_an_incomplete_trainer_checkpoint`` is the fast check of the rule that a
trainer checkpoint missing a state file is removed, never resumed from (nor is the checkpoint of a
finished training: HF's Trainer, resumed from it mid-epoch, trains one step past ``max_steps``,
which this crash test caught).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.atomic import COMPLETE_MARKER
from ladder.training.fit import last_complete_trainer_checkpoint

SCRIPT = Path(__file__).with_name("crash_pipeline.py")
SEED = 20240611
TRIALS = 30
STAGES = {"01-sft": ("sft", 4), "02-dpo": ("dpo", 3), "03-grpo": ("grpo", 3)}  # dir -> (name, max_steps)
# HF's Trainer restores weights, optimizer, scheduler and RNG state on resume; on this CPU the
# resumed runs came out bit-identical. The tolerance leaves room for a platform where a resumed
# run takes a different summation order, while still catching a resume that skipped or repeated
# steps (one step of these learning rates moves weights by ~1e-3).
RESUME_ATOL = 1e-5


class ForkServer:
    """``crash_pipeline.py --serve``: imports once, forks one pipeline run per request."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )
        ready = self.proc.stdout.readline().strip()
        assert ready == "ready", f"fork server did not start; see {log}"

    def run(self, model: Path, run_dir: Path, *, kill_after: float | None = None,
            **settings: Any) -> tuple[bool, int, float]:
        """Run the pipeline in a forked child; return ``(killed, wait status, seconds)``."""
        job = {"model": str(model), "run_dir": str(run_dir), "result": str(run_dir) + ".json",
               "kill_after": kill_after, **settings}
        start = time.monotonic()
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        started = self.proc.stdout.readline().split()
        assert started and started[0] == "pid", f"fork server answered {started}; see {self.log.name}"
        ended = self.proc.stdout.readline().split()
        assert ended and ended[0] == "exit", f"fork server answered {ended}; see {self.log.name}"
        return ended[3] == "killed", int(ended[2]), time.monotonic() - start

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    srv = ForkServer(tmp_path_factory.mktemp("crash-logs") / "server.log")
    yield srv
    srv.close()


def _weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _trainer_checkpoints(run_dir: Path) -> dict[str, int]:
    """Stage name -> step of its newest *complete* trainer checkpoint (read-only look)."""
    found: dict[str, int] = {}
    for state in (run_dir / ".trainer").glob("*/checkpoint-*/trainer_state.json"):
        ckpt = state.parent
        try:
            json.loads(state.read_text())
        except ValueError:
            continue
        if (ckpt / "optimizer.pt").is_file() and any(ckpt.glob("*.safetensors")):
            name = ckpt.parent.name.rsplit("-", 1)[0]
            found[name] = max(found.get(name, 0), int(ckpt.name.rsplit("-", 1)[1]))
    return found


def assert_published_dirs_are_whole(run_dir: Path) -> dict[str, bytes]:
    """Every dir with a COMPLETE marker holds what the marker promises; returns the markers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    markers: dict[str, bytes] = {}
    for child in sorted(run_dir.iterdir()):
        marker_file = child / COMPLETE_MARKER
        if not marker_file.is_file() or ".tmp-" in child.name:
            # A temp dir killed after its marker was written but before the rename is a leftover:
            # nothing reads it, and the next run removes it (or puts a moved-aside one back).
            continue
        assert child.name in STAGES, f"{child.name} looks published but is not a stage directory"
        raw = marker_file.read_bytes()
        marker = json.loads(raw)
        ckpt = marker["checkpoint"]
        assert marker["fingerprint"] == ckpt["fingerprint"]
        model_dir = Path(ckpt["path"])
        assert model_dir.parent == child, ckpt["path"]
        AutoModelForCausalLM.from_pretrained(str(model_dir))  # config + every weight
        AutoTokenizer.from_pretrained(str(model_dir))
        assert (Path(ckpt["adapter_path"]) / "adapter_model.safetensors").is_file()
        assert json.loads((child / "adapter" / "adapter_config.json").read_text())
        metrics = json.loads((child / "metrics.json").read_text())
        assert metrics["train"]["steps"] == STAGES[child.name][1], (child, metrics["train"])
        markers[child.name] = raw
    return markers


def assert_logs_have_every_step_once(run_dir: Path) -> None:
    for dir_name, (_name, steps) in STAGES.items():
        records = [json.loads(line) for line in (run_dir / dir_name / "trainer_log.jsonl").open()]
        logged = [r["step"] for r in records if "loss" in r]
        assert logged == list(range(1, steps + 1)), (dir_name, logged)
        assert sum("train_runtime" in r for r in records) == 1, dir_name


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(server: ForkServer, tiny_model: Path, tmp_path: Path) -> None:
    base_dir = tmp_path / "uninterrupted"
    killed, status, duration = server.run(tiny_model, base_dir)
    assert not killed and status == 0, f"uninterrupted run failed; see {server.log.name}"
    baseline = json.loads(Path(str(base_dir) + ".json").read_text())
    base_weights = {d: _weights(base_dir / d / "model") for d in STAGES}
    assert_logs_have_every_step_once(base_dir)

    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    diffs: list[tuple[int, str, float]] = []
    for trial in range(TRIALS):
        run_dir = tmp_path / f"trial-{trial:02d}"
        delay = rng.uniform(0.0, duration)
        killed, _status, _ = server.run(tiny_model, run_dir, kill_after=delay)
        seen["killed" if killed else "finished before the kill"] += 1
        # What the kill left: published dirs are whole, the manifest is whole JSON.
        before = assert_published_dirs_are_whole(run_dir) if run_dir.is_dir() else {}
        if (run_dir / "manifest.json").exists():
            json.loads((run_dir / "manifest.json").read_text())
        resumable = _trainer_checkpoints(run_dir) if run_dir.is_dir() else {}
        seen[f"{len(before)} stage(s) complete at the kill"] += 1
        if resumable:
            seen["resumed from a trainer checkpoint"] += 1

        again, status, _ = server.run(tiny_model, run_dir)
        assert not again and status == 0, f"trial {trial}: the re-run failed (kill at {delay:.2f}s)"
        result = json.loads(Path(str(run_dir) + ".json").read_text())
        after = assert_published_dirs_are_whole(run_dir)
        assert set(after) == set(STAGES)
        complete_names = {STAGES[d][0] for d in before}
        assert not complete_names & set(result["trained"]), (trial, before.keys(), result["trained"])
        for dir_name, raw in before.items():
            assert after[dir_name] == raw, f"trial {trial}: {dir_name} was re-published"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        for entry in manifest["stages"]:
            expected = "reused" if entry["name"] in complete_names else "complete"
            assert entry["status"] == expected, (trial, entry["name"], entry["status"])
        assert result["final_fingerprint"] == baseline["final_fingerprint"]
        assert result["fingerprints"] == baseline["fingerprints"]
        for dir_name in STAGES:
            weights = _weights(run_dir / dir_name / "model")
            diff = max(float((weights[k] - base_weights[dir_name][k]).abs().max()) for k in weights)
            name = STAGES[dir_name][0]
            if name in resumable:
                diffs.append((trial, name, diff))
                assert diff <= RESUME_ATOL, (trial, name, diff)
            else:
                assert diff == 0.0, (trial, name, diff)  # trained from scratch or reused: identical
        assert_logs_have_every_step_once(run_dir)
        assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]
        assert not any((run_dir / ".trainer").glob("*/checkpoint-*")), "resumable state left after completion"

    print(f"\ncrash trials: {dict(seen)}; uninterrupted run {duration:.1f}s; "
          f"max weight diff after a resume: {max((d for *_, d in diffs), default=0.0):.3g}")
    # The seeded delays must exercise the interesting cases, or the test proves little.
    assert seen["killed"] >= TRIALS * 3 // 4, seen
    assert seen["resumed from a trainer checkpoint"] >= 4, seen
    assert sum(n for k, n in seen.items() if k[0] in "123") >= 4, seen  # some stages done at the kill


def test_resume_never_uses_an_incomplete_trainer_checkpoint(tmp_path: Path) -> None:
    trainer_dir = tmp_path / ".trainer" / "sft-0123"

    def checkpoint(step: int, *, skip: str | None = None, state: str = '{"global_step": 1}') -> Path:
        path = trainer_dir / f"checkpoint-{step}"
        path.mkdir(parents=True)
        files = {"adapter_model.safetensors": "w", "optimizer.pt": "o", "scheduler.pt": "s",
                 "rng_state.pth": "r", "trainer_state.json": state}
        for name, text in files.items():
            if name != skip:
                (path / name).write_text(text)
        return path

    good = checkpoint(2)
    checkpoint(3, skip="optimizer.pt")  # killed while saving the optimizer
    checkpoint(4, skip="trainer_state.json")  # killed before the state, written last
    checkpoint(5, state='{"global_st')  # killed while writing the state
    checkpoint(6, skip="adapter_model.safetensors")  # killed while saving the weights
    # Complete, but the end of training: the Trainer would run a step past max_steps from it.
    checkpoint(7, state='{"global_step": 7, "max_steps": 7}')
    assert last_complete_trainer_checkpoint(trainer_dir) == good
    assert sorted(p.name for p in trainer_dir.iterdir()) == ["checkpoint-2"]

    # Nothing complete at all: nothing to resume from, and nothing left to trip over.
    for name in ("optimizer.pt", "scheduler.pt"):
        (good / name).unlink()
    assert last_complete_trainer_checkpoint(trainer_dir) is None
    assert list(trainer_dir.iterdir()) == []
