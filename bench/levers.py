"""Levers on the demo's speed, each measured side by side in one run (issue 14).

    python bench/levers.py omp        # OpenMP waiting: spin (libgomp's default) vs passive vs 1 thread
    python bench/levers.py dropout    # LoRA dropout 0.05 vs 0, fp32 vs bf16 autocast, sdpa vs eager attention
    python bench/levers.py genbatch   # observation answers in batches of 32 / 64 / 128
    python bench/levers.py merged     # generating with the LoRA adapter on vs merged into the weights
    python bench/levers.py memory     # CPU tensors in transparent huge pages (THP_MEM_ALLOC_ENABLE) or not
    python bench/levers.py malloc     # glibc keeping freed memory (mmap/trim thresholds) or handing it back
                                      # (--bf16: the LoRA step under bf16 autocast, as the demo trains)
    python bench/levers.py decode     # ladder's decode loop (finished rows leave the batch) vs generate()

Every lever runs its variants in alternation (A B C A B C ...), so a change in the machine's load
hits them alike; each line records the load average. The workloads are the demo's: its model
(SmolLM2-135M-Instruct, fp32), its LoRA (r=16, alpha=32, all-linear), its SFT rows and held-out
problems, the behaviour suites' items, and its generation settings (greedy, <= 40 new tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATA = Path(__file__).resolve().parents[1] / "src" / "ladder" / "demo" / "data"


def _load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _model(lora: dict[str, Any] | None = None, attn: str | None = None, dtype: str | None = None,
           path: str | None = None) -> tuple[Any, Any]:
    from types import SimpleNamespace

    import torch

    from ladder.demo.model import demo_model_path
    from ladder.training.models import load_model, load_tokenizer

    path = path or str(demo_model_path())
    model = load_model(path, settings=SimpleNamespace(attn_implementation=attn) if attn else None,
                       dtype=getattr(torch, dtype) if dtype else None)
    tokenizer = load_tokenizer(path)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", **lora))
    return model, tokenizer


def _sft_batch(tokenizer: Any, n: int = 8) -> dict[str, Any]:
    import torch

    rows = _load("sft_train.jsonl")[:n]
    texts = []
    for row in rows:
        messages = row.get("messages") or [{"role": "user", "content": row.get("instruction") or row.get("prompt")},
                                           {"role": "assistant", "content": row.get("output") or row.get("completion")}]
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _lora_step(model: Any, batch: dict[str, Any], optimizer: Any, autocast: bool = False) -> float:
    import torch

    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # what `precision: bf16` trains under
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def _prompts(n: int = 32) -> list[Any]:
    return [row["prompt"] for row in _load("grpo_eval.jsonl")][:n]


def _observation_prompts() -> list[tuple[Any, int]]:
    """(prompt, token budget) of one observation's generated answers at the demo's settings."""
    from ladder.evals import resolve_behaviour
    from ladder.evals.runner import plan

    planned = [(item["prompt"], budget) for _suite, item, budget in plan(resolve_behaviour(None), 40)]
    return planned + [(row["prompt"], 40) for row in _load("grpo_eval.jsonl")]


def _generate(model: Any, tokenizer: Any, prompts: list[Any], batch_size: int = 32, max_new: int = 40) -> tuple[float, list[str]]:
    from ladder.generation import GenerationSettings, generate

    start = time.perf_counter()
    gens = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=max_new, batch_size=batch_size,
                                                                  temperature=0.0))
    return time.perf_counter() - start, [g.text for g in gens]


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------------------------- omp


OMP_VARIANTS = {
    "spin (libgomp default)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=3000": {"GOMP_SPINCOUNT": "3000"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


#: Where CPU tensors' memory comes from. glibc serves large blocks with fresh mmap()s, so every big
#: activation or logits tensor is page-faulted in 4 KiB at a time and handed back on free; torch can
#: ask for transparent huge pages for its CPU tensors instead (2 MiB pages, where the kernel allows
#: them: /sys/kernel/mm/transparent_hugepage/enabled "always" or "madvise").
MEMORY_VARIANTS = {
    "default": {"THP_MEM_ALLOC_ENABLE": "0"},
    "THP_MEM_ALLOC_ENABLE=1": {"THP_MEM_ALLOC_ENABLE": "1"},
}


#: glibc's malloc serves blocks above its mmap threshold (128 KiB, raised dynamically up to 32 MiB)
#: with fresh mmap()s and trims the heap's free top above 128 KiB: a freed activation goes back to
#: the kernel and the next one is page-faulted in again, zeroed, 4 KiB at a time. These keep blocks
#: up to 32 MiB (glibc's ceiling) in the heap and the heap's free memory in the process.
MALLOC_VARIANTS = {
    "default": {},
    "mmap 32 MiB, trim 1 GiB": {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)},
    # no mmap at all: blocks above 32 MiB (the logits, the LM head's gradients) come from the heap too
    "no mmap, trim 1 GiB": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)},
    # the same two settings made in-process with mallopt(), as ladder's command line does
    "keep_freed_memory()": {"_LEVERS_KEEP_FREED_MEMORY": "1"},
}


def _faults_and_system_cpu() -> tuple[int, float]:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def omp_worker() -> None:
    """One variant's workload, in a fresh process (libgomp reads its settings when it loads)."""
    if os.environ.get("_LEVERS_KEEP_FREED_MEMORY"):
        from ladder.cpu_allocator import keep_freed_memory

        assert keep_freed_memory()
    import torch

    torch.manual_seed(0)
    model, tokenizer = _model({"lora_dropout": 0.0})
    batch = _sft_batch(tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = bool(os.environ.get("_LEVERS_BF16"))  # the step as `precision: bf16` trains it
    _lora_step(model, batch, optimizer, autocast)  # warm-up
    faults0, sys0 = _faults_and_system_cpu()
    cpu0, start = time.process_time(), time.perf_counter()
    steps = [_lora_step(model, batch, optimizer, autocast) for _ in range(2)]
    train_cpu = time.process_time() - cpu0
    base = model.get_base_model()
    cpu0 = time.process_time()
    gen_s, texts = _generate(base, tokenizer, _prompts(32))
    faults, sys_s = _faults_and_system_cpu()
    print(json.dumps({"lora_step_s": statistics.mean(steps), "lora_step_cpu_s": train_cpu / 2,
                      "generate_32x40_s": gen_s, "generate_cpu_s": time.process_time() - cpu0,
                      "threads": torch.get_num_threads(), "texts": texts,
                      "minor_page_faults": faults - faults0, "system_cpu_s": round(sys_s - sys0, 2),
                      "wall_s": time.perf_counter() - start}))


def omp(rounds: int, variants: list[str] | None = None, table: dict[str, dict[str, str]] = OMP_VARIANTS,
        bf16: bool = False) -> list[dict[str, Any]]:
    out = []
    for r in range(rounds):
        for name, env in table.items():
            if variants and name not in variants:
                continue
            load = _load_avg()
            env = {**env, "_LEVERS_BF16": "1"} if bf16 else env
            proc = subprocess.run([sys.executable, __file__, "_omp_worker"], env={**os.environ, **env},
                                  capture_output=True, text=True, check=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            out.append({"round": r, "variant": name, "load": load, **result})
            print(json.dumps({k: v for k, v in out[-1].items() if k != "texts"}), flush=True)
    return out


# ------------------------------------------------------------------------------------------- dropout


# name -> (LoRA dropout, attn_implementation, bf16 autocast, the frozen base's dtype)
DROPOUT_VARIANTS = {
    "dropout 0.05": (0.05, None, False, None),
    "dropout 0": (0.0, None, False, None),
    "dropout 0.05, bf16": (0.05, None, True, None),
    "dropout 0, bf16": (0.0, None, True, None),
    "dropout 0, bf16, eager": (0.0, "eager", True, None),
    # the frozen base in bf16 (PEFT keeps the adapter in float32): autocast no longer casts 135M
    # weights to bf16 on every forward, as a GPU run (bf16 weights) trains
    "dropout 0, bf16, eager, bf16 base": (0.0, "eager", True, "bfloat16"),
}


def dropout(rounds: int, variants: list[str] | None = None) -> list[dict[str, Any]]:
    """LoRA steps on the demo's SFT batch: dropout 0.05 vs 0, fp32 vs bf16 autocast, sdpa vs eager attention.

    bf16 variants are only meaningful where the CPU has native bf16 (``cpu_has_native_bf16``).
    """
    import torch

    out = []
    models = {}
    for name in variants or list(DROPOUT_VARIANTS):
        p, attn, autocast, dtype = DROPOUT_VARIANTS[name]
        torch.manual_seed(0)
        model, tokenizer = _model({"lora_dropout": p}, attn=attn, dtype=dtype)
        optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        models[name] = (model, optimizer, autocast)
    batch = _sft_batch(tokenizer)
    for model, optimizer, autocast in models.values():
        _lora_step(model, batch, optimizer, autocast)
    for r in range(rounds):
        for name, (model, optimizer, autocast) in models.items():
            load = _load_avg()
            out.append({"round": r, "variant": name, "load": load,
                        "lora_step_s": _lora_step(model, batch, optimizer, autocast)})
            print(json.dumps(out[-1]), flush=True)
    return out


# ------------------------------------------------------------------------------------------ genbatch


def genbatch(rounds: int, sizes: tuple[int, ...] = (32, 64, 128), bf16: bool = False,
             path: str | None = None) -> list[dict[str, Any]]:
    """One observation's answers (as :func:`decode`) in batches of each size, alternating; the
    decode loop drops finished rows, so a larger batch costs fewer steps, not more padding."""
    model, tokenizer = _model(dtype="bfloat16" if bf16 else None, path=path)
    planned = _observation_prompts()
    budgets = sorted({b for _, b in planned})
    out, answers = [], {}
    for r in range(rounds):
        for size in sizes:
            load, total, texts = _load_avg(), 0.0, []
            for budget in budgets:  # as the runner does: one generate() per budget
                seconds, t = _generate(model, tokenizer, [p for p, b in planned if b == budget], size, budget)
                total, texts = total + seconds, texts + t
            repeatable = answers.setdefault(size, texts) == texts
            same = sum(a == b for a, b in zip(answers[sizes[0]], texts, strict=True))
            out.append({"round": r, "batch_size": size, "load": load, "answers": len(texts), "s": round(total, 1),
                        f"same_answers_as_{sizes[0]}": same, "repeatable": repeatable})
            print(json.dumps(out[-1]), flush=True)
    return out


# -------------------------------------------------------------------------------------------- decode


def decode(rounds: int, bf16: bool = False, path: str | None = None) -> list[dict[str, Any]]:
    """One observation's answers (behaviour suites and held-out problems, greedy, batches of 32,
    one generate() per token budget as the runner does) with ladder's decode loop, which drops
    finished rows, and with transformers' generate() (LADDER_DECODE_LOOP=0), alternating. ``path``:
    a checkpoint to answer with instead of the demo model (a trained one stops sooner)."""
    model, tokenizer = _model(dtype="bfloat16" if bf16 else None, path=path)
    planned = _observation_prompts()
    budgets = sorted({b for _, b in planned})
    out = []
    for r in range(rounds):
        for variant, env in (("ladder loop", "1"), ("generate()", "0")):
            os.environ["LADDER_DECODE_LOOP"] = env
            load, total, texts = _load_avg(), 0.0, []
            for budget in budgets:
                seconds, t = _generate(model, tokenizer, [p for p, b in planned if b == budget], 32, budget)
                total, texts = total + seconds, texts + t
            out.append({"round": r, "variant": variant, "load": load, "answers": len(texts), "s": round(total, 2),
                        "texts": texts})
            print(json.dumps({k: v for k, v in out[-1].items() if k != "texts"}), flush=True)
    os.environ.pop("LADDER_DECODE_LOOP", None)
    same = [sum(a == b for a, b in zip(x["texts"], y["texts"], strict=True)) for x, y in zip(out[::2], out[1::2])]
    print(json.dumps({"identical_answers_per_round": same, "answers": out[0]["answers"]}))
    return out


# -------------------------------------------------------------------------------------------- merged


def merged(rounds: int) -> list[dict[str, Any]]:
    """GRPO's rollouts: 16 completions of <= 32 tokens at a time, with the adapter on vs merged."""
    import torch

    from ladder.generation import GenerationSettings, generate

    torch.manual_seed(0)
    model, tokenizer = _model({"lora_dropout": 0.0})
    with torch.no_grad():  # a trained adapter: B is zero at initialisation, which would merge to nothing
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    prompts = [p for p in _prompts(4) for _ in range(4)]
    settings = GenerationSettings(max_new_tokens=32, batch_size=16, temperature=0.7, seed=0)
    out = []
    for r in range(rounds):
        for variant in ("adapter on", "merged"):
            load = _load_avg()
            if variant == "merged":
                model.merge_adapter()
            start = time.perf_counter()
            texts = [g.text for g in generate(model, tokenizer, prompts, settings)]
            seconds = time.perf_counter() - start
            if variant == "merged":
                model.unmerge_adapter()
            out.append({"round": r, "variant": variant, "load": load, "s": round(seconds, 2), "texts": texts})
            print(json.dumps({k: v for k, v in out[-1].items() if k != "texts"}), flush=True)
    same = sum(a["texts"] == b["texts"] for a, b in zip(out[::2], out[1::2], strict=True))
    print(json.dumps({"rounds_with_identical_samples": same, "rounds": rounds}))
    return out


def summary(rows: list[dict[str, Any]], key: str, value: str) -> dict[str, float]:
    by: dict[Any, list[float]] = {}
    for row in rows:
        by.setdefault(row[key], []).append(row[value])
    return {str(k): round(statistics.median(v), 3) for k, v in by.items()}


def main() -> int:
    if sys.argv[1:] == ["_omp_worker"]:
        omp_worker()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lever", choices=["omp", "memory", "malloc", "dropout", "genbatch", "merged", "decode"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="append the rows as JSON lines here")
    parser.add_argument("--variant", action="append",
                        help=f"only these: omp {', '.join(OMP_VARIANTS)}; dropout {', '.join(DROPOUT_VARIANTS)}")
    parser.add_argument("--bf16", action="store_true",
                        help="omp, memory, malloc: the LoRA step under bf16 autocast, as `precision: bf16` trains "
                             "(where the CPU has native bf16); decode, genbatch: the model in bf16, as the demo observes")
    parser.add_argument("--model", help="decode, genbatch: answer with this checkpoint (default: the demo model)")
    args = parser.parse_args()
    if args.lever == "omp":
        rows = omp(args.rounds, args.variant, bf16=args.bf16)
    elif args.lever == "memory":
        rows = omp(args.rounds, args.variant, MEMORY_VARIANTS, bf16=args.bf16)
    elif args.lever == "malloc":
        rows = omp(args.rounds, args.variant, MALLOC_VARIANTS, bf16=args.bf16)
    elif args.lever == "dropout":
        from ladder.cpu_allocator import keep_freed_memory

        keep_freed_memory()  # as ladder's command line does
        rows = dropout(args.rounds, args.variant)
    elif args.lever == "decode":
        rows = decode(args.rounds, bf16=args.bf16, path=args.model)
    elif args.lever == "genbatch":
        rows = genbatch(args.rounds, bf16=args.bf16, path=args.model)
    else:
        rows = merged(args.rounds)
    if args.lever in ("omp", "memory", "malloc"):
        print("median LoRA step s:", summary(rows, "variant", "lora_step_s"))
        print("median minor page faults:", summary(rows, "variant", "minor_page_faults"))
        print("median system CPU s:", summary(rows, "variant", "system_cpu_s"))
        print("median generation s:", summary(rows, "variant", "generate_32x40_s"))
        print("median generation CPU s:", summary(rows, "variant", "generate_cpu_s"))
        texts = {r["variant"]: r["texts"] for r in rows}
        first = next(iter(texts.values()))
        print("same answers as the first variant:", {k: v == first for k, v in texts.items()})
    elif args.lever == "dropout":
        print("median LoRA step s:", summary(rows, "variant", "lora_step_s"))
    elif args.lever == "genbatch":
        print("median s:", summary(rows, "batch_size", "s"))
    else:
        print("median s:", summary(rows, "variant", "s"))
    if args.out:
        with open(args.out, "a") as f:
            for row in rows:
                f.write(json.dumps({"lever": args.lever, **row}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
