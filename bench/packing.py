"""SFT with `packing: true` against padded batches, on the same machine, in one invocation.

    python bench/packing.py [--rows 64] [--batch 8] [--max-length 512] [--json out.json]

Both runs train a LoRA (SFT's defaults) for one epoch over the same first ``--rows`` rows of the
demo's SFT data (src/ladder/demo/data/sft_train.jsonl) on the demo's embedded model
(SmolLM2-135M-Instruct, fetched and cached on first use; the tiny test model when that cannot be
fetched), in fp32 (`precision: fp32`), one after the other in this process:

- padded: ``--batch`` rows per step, each batch padded to its longest row;
- packed: rows packed into ``--max-length`` token blocks (TRL's best-fit decreasing, padding-free),
  one block per step.

Tokens per second counts the rows' own tokens (padding excluded), the same number in both runs,
over the time ``trainer.train()`` took; the padding share is of the tokens the steps process. The CPU's model name and bf16-relevant flags are printed
with the result (docs/benchmarks.md records it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "ladder" / "demo" / "data" / "sft_train.jsonl"
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")


def cpu_info() -> dict:
    """``lscpu``'s model name and the flags that decide how bf16 runs on this CPU."""
    info: dict = {"model_name": platform.processor() or "unknown", "flags": []}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return info
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["model_name"] = value.strip()
        elif key.strip() == "Flags":
            info["flags"] = [f for f in BF16_FLAGS if f in value.split()]
        elif key.strip() == "CPU(s)":
            info["cpus"] = int(value.strip())
    return info


def model_path() -> tuple[Path, str]:
    from ladder.errors import LadderError

    try:
        from ladder.demo.model import demo_model_path

        return demo_model_path(), "SmolLM2-135M-Instruct (the demo's embedded model)"
    except LadderError as exc:
        print(f"could not fetch the demo model ({exc}); using the tiny test model", file=sys.stderr)
        from ladder.testing import build_tiny_model

        return build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"), "tiny random Qwen2 (ladder.testing)"


def run(mode: str, rows: list, model: Path, args: argparse.Namespace, work: Path) -> dict:
    from ladder import SFT
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext
    from ladder.training.args import quiet_trainer

    packed = mode == "packed"
    stage = SFT(dataset=rows, num_train_epochs=1, max_length=args.max_length, packing=packed,
                per_device_train_batch_size=1 if packed else args.batch, precision="fp32", save_steps=0,
                trainer_kwargs={"activation_checkpointing": False, "logging_steps": 1000})
    ctx = StageContext(run_dir=work, work_dir=work / mode, final_dir=work / mode, trainer_dir=work / f"{mode}-t")
    trainer, _ = stage.build_trainer(Checkpoint.base(model), ctx)
    quiet_trainer(trainer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    # What the steps process, padding included (one pass of the dataloader, collation only).
    processed = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    loss = [r["train_loss"] for r in trainer.state.log_history if "train_loss" in r]
    return {"mode": mode, "steps": trainer.state.global_step, "rows": len(rows), "tokens": tokens,
            "padding_share": round(1 - tokens / processed, 3),
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "train_loss": round(loss[-1], 4) if loss else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="rows per step when padded")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per packed block")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from ladder.training.models import cpu_has_native_bf16

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[: args.rows]]
    model, model_name = model_path()
    with tempfile.TemporaryDirectory() as tmp:
        load_before = os.getloadavg()[0]
        results = [run(mode, rows, model, args, Path(tmp)) for mode in ("padded", "packed")]
    padded, packed = results
    report = {
        "model": model_name,
        "cpu": {**cpu_info(), "native_bf16": cpu_has_native_bf16()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": "fp32",
        # the machine's 1-minute load average before and after: other work shares the CPUs
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": results,
        "packed_over_padded": round(packed["tokens_per_s"] / padded["tokens_per_s"], 2),
    }
    print(f"model: {model_name}; CPU: {report['cpu']['model_name']} ({report['cpu'].get('cpus', '?')} CPUs, "
          f"flags {' '.join(report['cpu']['flags']) or 'none'}, native bf16 {report['cpu']['native_bf16']}); "
          f"torch {torch.__version__}, {report['threads']} threads, fp32; load average {report['load_average']}")
    print(f"{'mode':8} {'rows':>5} {'steps':>6} {'tokens':>7} {'padding':>8} {'seconds':>8} {'tokens/s':>9} "
          f"{'loss':>7}")
    for r in results:
        print(f"{r['mode']:8} {r['rows']:5d} {r['steps']:6d} {r['tokens']:7d} {r['padding_share']:8.1%} "
              f"{r['seconds']:8.2f} {r['tokens_per_s']:9.1f} {r['train_loss']!s:>7}")
    print(f"packed / padded tokens per second: {report['packed_over_padded']}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
