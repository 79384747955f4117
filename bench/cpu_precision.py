"""fp32 vs bf16 on this CPU, side by side: one LoRA training step and greedy generation.

    python bench/cpu_precision.py [--steps 4] [--batch 8] [--seq 80]

Uses the demo's embedded model (SmolLM2-135M-Instruct, fetched and cached on first use). Training
compares fp32 with bf16 autocast from fp32 weights (what `precision: bf16` does on a CPU);
generation compares fp32 weights with bf16 weights. Prints medians and the bf16/fp32 ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> int:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ladder.demo.model import demo_model_path
    from ladder.training.models import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=80)
    args = parser.parse_args()
    path = demo_model_path()
    torch.manual_seed(0)
    ids = torch.randint(0, 40000, (args.batch, args.seq))
    train: dict[str, float] = {}
    for mode in ("fp32", "bf16"):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                               LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for _ in range(args.steps + 1):  # the first step warms up
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - start)
        train[mode] = statistics.median(times[1:])
    gen: dict[str, float] = {}
    for mode, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        prompt = ids[:, :30]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            with torch.no_grad():
                model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=40,
                               min_new_tokens=40, do_sample=False)
            times.append(time.perf_counter() - start)
        gen[mode] = min(times)
    print(f"native bf16: {cpu_has_native_bf16()}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print("| measurement | fp32 s | bf16 s | bf16 / fp32 |")
    print("|---|---|---|---|")
    print(f"| LoRA step, batch {args.batch} x {args.seq} tokens (bf16 = autocast) | {train['fp32']:.2f} | "
          f"{train['bf16']:.2f} | {train['bf16'] / train['fp32']:.2f} |")
    print(f"| greedy generation, {args.batch} x 40 new tokens (bf16 = bf16 weights) | {gen['fp32']:.2f} | "
          f"{gen['bf16']:.2f} | {gen['bf16'] / gen['fp32']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
