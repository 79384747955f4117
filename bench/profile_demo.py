"""Where `ladder demo`'s time goes, and how much of the machine it uses.

    python bench/profile_demo.py [--precision fp32] [--quick N] [--out profile.json] [--md profile.md]

Runs the demo recipe as it is on disk, in this process (the embedded model, fetched and cached
first), with the instruments of ``bench/profiling.py``, and prints, for the base model's
observation, each stage and the report, and for the whole run:

- the shares of the wall time by activity (model loading, trainer set-up, training, rollouts,
  each part of an observation, merging, saving, ...) and by operation (generation prefill and
  decode, training forward and backward, optimizer steps, making batches, ...);
- the model FLOPs done (see ``bench/profiling.py``), the achieved FLOP/s, and that as a share
  of this machine's matmul rate, measured in the same process before and after the run (fp32,
  and bf16 where the CPU has native bf16).

``--precision fp32`` forces fp32 in every stage and in observation (``generation.precision``): a
CPU with native bf16 measured the way a CPU without it runs. ``--quick N`` is a check
of the instruments: N steps per stage, 8 rows per evaluation file, 4 items per behaviour suite.
The machine's load average is sampled through the run; record it with the numbers. The CPU
thread and allocator settings are the ``ladder`` command's (:func:`ladder.cli.cpu_thread_defaults`,
:func:`ladder.cpu_allocator.keep_freed_memory`); set ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or
``LADDER_KEEP_FREED_MEMORY=0`` in the environment to measure others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from ladder.cli import cpu_thread_defaults  # noqa: E402
from ladder.cpu_allocator import keep_freed_memory  # noqa: E402

cpu_thread_defaults("demo")  # as `ladder demo` runs: before torch loads
keep_freed_memory()
from profiling import Profile, cpu_model, cpu_seconds, instrument, matmul_rate  # noqa: E402


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted({f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text})


def rss_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


class LoadSampler:
    """The 1-minute load average every few seconds and the resident memory by part, in a thread."""

    def __init__(self, profile: Profile, every_s: float = 0.5) -> None:
        self.samples: list[float] = []
        self.rss: dict[str, float] = defaultdict(float)
        self.profile = profile
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        n = 0
        while not self._stop.wait(every_s):
            n += 1
            if n % 10 == 0:
                self.samples.append(os.getloadavg()[0])
            phase, activity, _ = self.profile.key()
            key = f"{phase} / {activity}"
            self.rss[key] = max(self.rss[key], rss_gb())

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(sum(s) / len(s), 2), "min": round(min(s), 2), "max": round(max(s), 2)}


def quick_recipe(n_steps: int, folder: Path) -> tuple[Path, list[str]]:
    """The demo exported to ``folder`` with 8 rows per evaluation file; overrides for N steps."""
    from ladder.demo import export

    recipe = export(folder)
    for name in ("dpo_eval.jsonl", "grpo_eval.jsonl", "sft_eval.jsonl"):
        path = folder / "data" / name
        if path.is_file():
            path.write_text("".join(path.read_text().splitlines(keepends=True)[:8]))
    return recipe, ["evals.behaviour={limit: 4}"]


def tables(profile: Profile, rate: float, wall: float) -> dict[str, Any]:
    """Per phase and for the whole run: seconds and FLOPs by activity and by operation."""
    phases: dict[str, dict[str, Any]] = {}
    order = list(dict.fromkeys(k[0] for k in profile.seconds))
    for phase in [*order, "whole run"]:
        def pick(key: tuple[str, str, str], phase: str = phase) -> bool:
            return phase == "whole run" or key[0] == phase

        seconds = sum(v for k, v in profile.seconds.items() if pick(k))
        flops = sum(v for k, v in profile.flops.items() if pick(k))
        by_act: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for k, v in profile.seconds.items():
            if pick(k):
                by_act[k[1]][0] += v
                by_op[k[2]][0] += v
        for k, v in profile.flops.items():
            if pick(k):
                by_act[k[1]][1] += v
                by_op[k[2]][1] += v
        if seconds < 0.05:
            continue

        def rows(parts: dict[str, list[float]], seconds: float = seconds) -> list[dict[str, Any]]:
            return [{"part": name, "s": round(s, 1), "share": round(s / seconds, 3),
                     "gflops": round(f / s / 1e9, 1) if s > 0 and f > 0 else None,
                     "of_matmul": round(f / s / 1e9 / rate, 3) if s > 0 and f > 0 else None}
                    for name, (s, f) in sorted(parts.items(), key=lambda kv: -kv[1][0]) if s >= 0.05]

        phases[phase] = {"s": round(seconds, 1), "tflop": round(flops / 1e12, 3),
                         "gflops": round(flops / seconds / 1e9, 1),
                         "of_matmul": round(flops / seconds / 1e9 / rate, 3),
                         "activities": rows(by_act), "operations": rows(by_op)}
    assert abs(phases["whole run"]["s"] - wall) / wall < 0.02, (phases["whole run"]["s"], wall)
    return phases


def markdown(profile_json: dict[str, Any]) -> str:
    m = profile_json["machine"]
    rate = profile_json["reference_gflops"]
    lines = [
        f"CPU: {m['cpu']} ({m['threads']} threads; flags {', '.join(m['flags'])}); torch {m['torch']}; "
        f"load average {profile_json['load']['mean']} (min {profile_json['load']['min']}, max "
        f"{profile_json['load']['max']}); process CPU time {profile_json['cpu_s']:.0f} s in "
        f"{profile_json['wall_s']:.0f} s wall.",
        f"Training precision: {profile_json['precision']}. Matmul rate (GFLOP/s): fp32 "
        f"{profile_json['matmul_gflops']['fp32']}"
        + (f", bf16 {profile_json['matmul_gflops']['bf16']}" if profile_json['matmul_gflops'].get('bf16') else "")
        + f"; the reference is {rate:.1f} ({profile_json['reference']}).",
        "",
        "| phase | wall s | TFLOP | GFLOP/s | of matmul rate |",
        "|---|---|---|---|---|",
    ]
    for name, p in profile_json["phases"].items():
        bold = "**" if name == "whole run" else ""
        lines.append(f"| {bold}{name}{bold} | {p['s']} | {p['tflop']} | {p['gflops']} | {bold}{p['of_matmul']:.0%}{bold} |")
    for kind in ("activities", "operations"):
        lines += ["", f"Shares of wall time by {kind[:-3] + 'y' if kind == 'activities' else 'operation'} "
                  "(GFLOP/s while in it, and as a share of the matmul rate):", ""]
        phases = list(profile_json["phases"])
        lines.append("| " + kind[:-1] if kind != "activities" else "| activity")
        lines[-1] += " | " + " | ".join(phases) + " |"
        lines.append("|---" * (len(phases) + 1) + "|")
        names = list(dict.fromkeys(r["part"] for p in profile_json["phases"].values() for r in p[kind]))
        for part in names:
            cells = []
            for p in profile_json["phases"].values():
                row = next((r for r in p[kind] if r["part"] == part), None)
                if row is None:
                    cells.append("")
                else:
                    rate_txt = f" ({row['of_matmul']:.0%})" if row["of_matmul"] else ""
                    cells.append(f"{row['share']:.0%}{rate_txt}")
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
    c = profile_json["tokens"]
    lines += ["", f"Tokens: {c.get('training_tokens', 0):.0f} trained, {c.get('scored_tokens', 0):.0f} scored "
              f"without gradients, {c.get('prompt_tokens', 0):.0f} prompt and {c.get('generated_tokens', 0):.0f} "
              f"generated; decode steps ran {c.get('decode_rows', 0):.0f} rows for those "
              f"{c.get('generated_tokens', 0):.0f} tokens."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["recipe", "fp32", "bf16"], default="recipe",
                        help="force every stage's precision (fp32: measure a CPU without native bf16)")
    parser.add_argument("--run-dir", default="runs/profile-demo")
    parser.add_argument("--quick", type=int, default=0, help="N steps per stage and small evaluations (a check)")
    parser.add_argument("--override", action="append", default=[], help="a recipe override KEY=VALUE (repeatable)")
    parser.add_argument("--out", help="write the profile as JSON here")
    parser.add_argument("--md", help="write the markdown tables here")
    args = parser.parse_args()

    import torch

    from ladder.demo import RECIPE
    from ladder.demo.model import demo_model_path
    from ladder.recipe import load_recipe

    model = str(demo_model_path())
    threads = torch.get_num_threads()
    bf16 = "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags()
    before = {"fp32": matmul_rate("fp32", threads), "bf16": matmul_rate("bf16", threads) if bf16 else None}
    shutil.rmtree(args.run_dir, ignore_errors=True)
    profile = Profile()
    instrument(profile)
    recipe, overrides = RECIPE, []
    scratch = tempfile.TemporaryDirectory(prefix="profile-demo-")
    if args.quick:
        recipe, overrides = quick_recipe(args.quick, Path(scratch.name))
        overrides += [f"stages.{i}.max_steps={args.quick}" for i in range(3)]
    if args.precision != "recipe":
        overrides += [f"stages.{i}.precision={args.precision}" for i in range(3)]
        overrides.append(f"generation.precision={args.precision}")  # probes and evaluations too
    overrides += args.override
    load_start = os.getloadavg()
    cpu0 = cpu_seconds()
    start = time.perf_counter()
    profile.last = start
    failed = None
    with LoadSampler(profile) as load:
        try:
            pipeline = load_recipe(recipe, model=model, run_dir=args.run_dir, overrides=overrides)
            pipeline.run(force=True)
        except BaseException as exc:  # still print what was measured
            failed = f"{type(exc).__name__}: {exc}"
        profile.flush()
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    after = {"fp32": matmul_rate("fp32", threads), "bf16": matmul_rate("bf16", threads) if bf16 else None}
    scratch.cleanup()

    def mean(kind: str) -> dict[str, float] | None:
        if before[kind] is None:
            return None
        return {k: round((before[kind][k] + after[kind][k]) / 2, 1) for k in before[kind]}

    # The reference: the rate of the precision the stages trained in (fp32 unless bf16 was asked
    # for on a CPU with native bf16), for 2048^3 products.
    trained_bf16 = bf16 and (args.precision == "bf16" or (args.precision == "recipe" and "bf16" in RECIPE.read_text()))
    reference = "bf16" if trained_bf16 else "fp32"
    rate = mean(reference)["2048^3"]  # type: ignore[index]
    out = {
        "machine": {"cpu": cpu_model(), "flags": cpu_flags(), "threads": threads, "python": platform.python_version(),
                    "torch": torch.__version__},
        "recipe": str(recipe), "overrides": overrides, "precision": args.precision,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load": {**load.summary(), "at_start": [round(x, 2) for x in load_start],
                 "at_end": [round(x, 2) for x in os.getloadavg()]},
        "matmul_gflops": {"fp32": mean("fp32"), "bf16": mean("bf16")},
        "matmul_gflops_before_after": {"before": before, "after": after},
        "reference": f"{reference} 2048^3, mean of before and after the run", "reference_gflops": rate,
        "tokens": {k: v for k, v in profile.counts.items() if not k.startswith("_")},
        "phases": tables(profile, rate, wall),
        "stages": {s["name"]: round(s.get("duration_s") or 0, 1) for s in json.loads(
            (Path(args.run_dir) / "manifest.json").read_text())["stages"]},
        "peak_rss_gb": round(max(load.rss.values(), default=0.0), 2),
        "rss_gb_by_part": {k: round(v, 2) for k, v in sorted(load.rss.items(), key=lambda kv: -kv[1])[:12]},
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                "LADDER_KEEP_FREED_MEMORY")},
        "failed": failed,
    }
    text = markdown(out)
    print(json.dumps(out, indent=1))
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        Path(args.md).write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
