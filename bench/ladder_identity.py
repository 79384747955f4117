"""The tiny-model whole ladder's metrics and final weights, as one JSON: a refactoring check.

    python bench/ladder_identity.py [--out identity.json] [--compare before.json]

Builds the tiny test model, runs SFT -> DPO -> GRPO(input=sft) with probes and evaluations (the
recipe of tests/integration/test_ladder.py) and prints, per stage, the sha256 of every published
weight file and the numbers in its metrics.json that do not depend on the clock. Run it before
and after a change that must not change behaviour; ``--compare`` exits 1 when anything differs
and prints what did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profiling import cpu_model  # noqa: E402  (bench/: the CPU named beside every timing)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Keys whose values depend on the clock or the machine's speed, not on what was trained.
_VOLATILE = {"runtime_s", "duration_s", "train_runtime", "train_samples_per_second", "train_steps_per_second",
             "seconds", "time", "started_at", "finished_at", "tokens_per_second", "generation_s", "wall_s"}

FAST = {"activation_checkpointing": False}
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 7) for b in range(1, 5)]
SFT_ROWS = [{"instruction": p["prompt"], "output": f"<answer>{p['answer']}</answer>"} for p in PROBLEMS]
PAIRS = [{"prompt": p["prompt"], "chosen": f"<answer>{p['answer']}</answer>", "rejected": "I do not know."}
         for p in PROBLEMS]
PROBES = {"replace": True, "items": [
    {"id": "sum", "prompt": "What is 2 + 2?"},
    {"id": "hello", "prompt": "Say hello."},
]}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if k not in _VOLATILE and not k.endswith("_s")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def run(work: Path) -> dict[str, Any]:
    import yaml

    from ladder.recipe import load_recipe
    from ladder.testing import build_tiny_model

    model = build_tiny_model(work / "tiny")
    for name, rows in (("sft", SFT_ROWS), ("pairs", PAIRS), ("problems", PROBLEMS)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "identity", "model": str(model), "run_dir": str(work / "run"),
        "probes": PROBES, "generation": {"max_new_tokens": 8},
        "evals": {"preference": "pairs.jsonl", "verifiable": "problems.jsonl"},
        "stages": [
            {"stage": "sft", "dataset": "sft.jsonl", "max_steps": 3, "learning_rate": 5e-3, "trainer_kwargs": FAST},
            {"stage": "dpo", "dataset": "pairs.jsonl", "max_steps": 2, "learning_rate": 5e-3,
             "heldout_fraction": 0.0, "trainer_kwargs": FAST},
            {"stage": "grpo", "input": "sft", "dataset": "problems.jsonl", "max_steps": 2,
             "max_completion_length": 8, "trainer_kwargs": FAST},
        ],
    }
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = load_recipe(work / "recipe.yaml").run()
    out: dict[str, Any] = {"machine": f"{platform.machine()} {cpu_model()}", "stages": {}}
    for directory in sorted(p for p in result.run_dir.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        weights = {
            str(f.relative_to(directory)): hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            for f in sorted(directory.rglob("*.safetensors"))
        }
        metrics = json.loads((directory / "metrics.json").read_text())
        probes = (directory / "probes.jsonl").read_text() if (directory / "probes.jsonl").is_file() else ""
        out["stages"][directory.name] = {
            "weights": weights,
            "metrics": _stable(metrics),
            "probes_sha256": hashlib.sha256(probes.encode()).hexdigest()[:16],
        }
    # Paths inside the temporary folder name it; the folder is not what was trained.
    return json.loads(json.dumps(out).replace(str(work), "<work>"))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                found.append(f"{path}.{key}: only in {'after' if key not in a else 'before'}")
            else:
                found += _diff(a[key], b[key], f"{path}.{key}")
        return found
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--compare", help="an earlier output to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp))
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        changes = _diff(before["stages"], result["stages"])
        for line in changes:
            print("changed:", line, file=sys.stderr)
        print("identical" if not changes else f"{len(changes)} differences", file=sys.stderr)
        return 1 if changes else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
