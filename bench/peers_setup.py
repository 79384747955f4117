"""The settings `bench/peers.py` gives all three tools, and each tool's form of them.

One :data:`SETTINGS` mapping is the source of the ladder recipes, the plain TRL script's spec
and LLaMA-Factory's YAML configs and dataset files, so the three train the same rows with the
same LoRA, steps, batch, learning rate, schedule, seed and precision (fp32). Pure functions: no
torch, nothing trained; `tests/unit/test_bench_peers.py` checks what they write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SETTINGS",
    "STAGES",
    "default_system_prompt",
    "ladder_recipe",
    "llamafactory_config",
    "llamafactory_dataset_info",
    "llamafactory_rows",
    "read_jsonl",
    "trl_spec",
    "write_llamafactory_inputs",
]

STAGES = ("sft", "dpo")

#: What every tool trains with. Small on purpose (the bench runs on two shared CPU cores).
SETTINGS: dict[str, Any] = {
    "seed": 0,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
    # Held the same in every tool (each tool's default differs somewhere): linear decay from the
    # peak, no warm-up, no weight decay, fused AdamW, one micro-batch per step, fp32, no activation
    # checkpointing (it makes small CPU runs ~2.5x slower; TRL and LLaMA-Factory turn it on by default).
    # `include_num_input_tokens_seen` makes the Trainer count non-padding tokens and log, at every
    # step, the seconds since training started: step times and tokens on one clock in all three.
    "trainer": {"lr_scheduler_type": "linear", "warmup_steps": 0, "weight_decay": 0.0,
                "optim": "adamw_torch_fused", "gradient_accumulation_steps": 1, "max_grad_norm": 1.0,
                "include_num_input_tokens_seen": "non_padding"},
    "sft": {"data": "sft_train.jsonl", "learning_rate": 1.0e-3, "max_steps": 10, "batch_size": 8,
            "max_length": 256},
    "dpo": {"data": "dpo_train.jsonl", "learning_rate": 3.0e-4, "max_steps": 4, "batch_size": 8,
            "max_length": 256, "beta": 0.1},
    # Held-out data, scored the same way on every tool's output (bench/peers_eval.py): the first
    # 32 of the demo's verifiable problems (one generation batch) after SFT, its 40 held-out pairs
    # after DPO.
    "eval": {"sft": "grpo_eval.jsonl", "dpo": "dpo_eval.jsonl"},
    "eval_rows": {"sft": 32, "dpo": 40},
    "generation": {"max_new_tokens": 40, "batch_size": 32},
}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def default_system_prompt(rendered_user_only: str) -> str | None:
    """The system prompt a ChatML template adds to a chat without one, from its rendering of a
    one-message chat (SmolLM2 adds "You are a helpful AI assistant named SmolLM, trained by
    Hugging Face", without the full stop LLaMA-Factory's `smollm2` template writes).

    >>> default_system_prompt("<|im_start|>system\\nBe brief<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n")
    'Be brief'
    >>> default_system_prompt("<|im_start|>user\\nHi<|im_end|>\\n") is None
    True
    """
    m = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", rendered_user_only, re.S)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- ladder


def ladder_recipe(stage: str, *, model: str, data_dir: Path, run_dir: Path,
                  settings: Mapping[str, Any] = SETTINGS) -> dict[str, Any]:
    """A one-stage ladder recipe (as YAML would load) training ``stage`` from ``model``.

    The run observes the base model and the stage's checkpoint with ladder's default probes; the
    behaviour suites are off (they would double the observation's cost) and the held-out sets are
    scored by `bench/peers_eval.py`, the same way for every tool. DPO holds no pairs out of its
    training data (``heldout_fraction: 0``), so every tool trains on the same rows.
    """
    s, lora = settings[stage], settings["lora"]
    entry: dict[str, Any] = {
        "stage": stage,
        "dataset": str(data_dir / s["data"]),
        "lora": {"r": lora["r"], "alpha": lora["alpha"], "dropout": lora["dropout"],
                 "target_modules": lora["target_modules"]},
        "learning_rate": s["learning_rate"],
        "max_steps": s["max_steps"],
        "per_device_train_batch_size": s["batch_size"],
        "gradient_accumulation_steps": settings["trainer"]["gradient_accumulation_steps"],
        "max_length": s["max_length"],
        "precision": "fp32",
        "trainer_kwargs": {k: v for k, v in settings["trainer"].items() if k != "gradient_accumulation_steps"},
    }
    if stage == "dpo":
        entry.update(beta=s["beta"], heldout_fraction=0.0)
    return {
        "name": f"peers-{stage}",
        "model": model,
        "run_dir": str(run_dir),
        "seed": settings["seed"],
        "generation": dict(settings["generation"]),
        "evals": {"behaviour": False},
        "stages": [entry],
    }


# --------------------------------------------------------------------------- TRL


def trl_spec(stage: str, *, model: str, data_dir: Path, out_dir: Path,
             settings: Mapping[str, Any] = SETTINGS) -> dict[str, Any]:
    """What `bench/peers_trl.py` reads: the model, the data file, and the TRL config's values."""
    s = settings[stage]
    args: dict[str, Any] = {
        "output_dir": str(out_dir / "trainer"),
        "learning_rate": s["learning_rate"],
        "max_steps": s["max_steps"],
        "per_device_train_batch_size": s["batch_size"],
        "max_length": s["max_length"],
        "seed": settings["seed"],
        "data_seed": settings["seed"],
        **settings["trainer"],
    }
    if stage == "dpo":
        args["beta"] = s["beta"]
    return {"stage": stage, "model": model, "data": str(data_dir / s["data"]), "out_dir": str(out_dir),
            "lora": dict(settings["lora"]), "args": args}


# --------------------------------------------------------------------------- LLaMA-Factory

_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system"}


def llamafactory_rows(stage: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows in LLaMA-Factory's sharegpt format with OpenAI role/content tags.

    SFT rows keep their ``messages``; a preference row becomes ``conversations`` (the prompt as a
    user turn) with ``chosen``/``rejected`` as one assistant message each (``ranking: true``).
    """
    if stage == "sft":
        return [{"messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]} for r in rows]
    out = []
    for r in rows:
        prompt = r["prompt"]
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        out.append({"conversations": turns, "chosen": {"role": "assistant", "content": r["chosen"]},
                    "rejected": {"role": "assistant", "content": r["rejected"]}})
    return out


def llamafactory_dataset_info(stage: str, file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry LLaMA-Factory reads the rows of :func:`llamafactory_rows` by."""
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt", "tags": dict(_TAGS)}
    if stage == "sft":
        entry["columns"] = {"messages": "messages"}
    else:
        entry.update(ranking=True, columns={"messages": "conversations", "chosen": "chosen", "rejected": "rejected"})
    return {f"peers_{stage}": entry}


def llamafactory_config(stage: str, *, model: str, dataset_dir: Path, out_dir: Path, default_system: str | None,
                        settings: Mapping[str, Any] = SETTINGS) -> dict[str, Any]:
    """The ``llamafactory-cli train`` YAML (as a mapping) for ``stage`` on the CPU.

    ``default_system`` is the model's own default system prompt, so the template renders each
    chat byte for byte as the model's chat template does (LLaMA-Factory's `smollm2` template
    ends it with a full stop the model's does not have).
    """
    s, lora, trainer = settings[stage], settings["lora"], settings["trainer"]
    if lora["target_modules"] != "all-linear":
        raise ValueError("LLaMA-Factory's `lora_target: all` is PEFT's all-linear; list other targets explicitly")
    cfg: dict[str, Any] = {
        "model_name_or_path": model,
        "trust_remote_code": False,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",  # every linear layer but the output head, as PEFT's all-linear
        "lora_rank": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "dataset": f"peers_{stage}",
        "dataset_dir": str(dataset_dir),
        "template": "smollm2",
        "cutoff_len": s["max_length"],
        "overwrite_cache": True,
        "dataloader_num_workers": 0,
        "output_dir": str(out_dir),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": s["batch_size"],
        "learning_rate": s["learning_rate"],
        "max_steps": s["max_steps"],
        "seed": settings["seed"],
        "data_seed": settings["seed"],
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "disable_gradient_checkpointing": True,
        **trainer,
    }
    if default_system is not None:
        cfg["default_system"] = default_system
    if stage == "dpo":
        cfg.update(pref_beta=s["beta"], pref_loss="sigmoid", pref_ftx=0.0)
    return cfg


def write_llamafactory_inputs(stage: str, rows: Sequence[Mapping[str, Any]], work: Path, *, model: str,
                              default_system: str | None, settings: Mapping[str, Any] = SETTINGS) -> Path:
    """Write the rows, ``dataset_info.json`` and the config under ``work``; return the config's path.

    The config is JSON, which is YAML too, so ``llamafactory-cli train`` reads it as written.
    """
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{stage}.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in llamafactory_rows(stage, rows))
    (data_dir / file_name).write_text(text, encoding="utf-8")
    (data_dir / "dataset_info.json").write_text(json.dumps(llamafactory_dataset_info(stage, file_name), indent=2))
    cfg = llamafactory_config(stage, model=model, dataset_dir=data_dir, out_dir=work / "output",
                              default_system=default_system, settings=settings)
    path = work / f"{stage}.yaml"
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path
