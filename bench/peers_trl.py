"""A plain TRL + PEFT script, the TRL column of `bench/peers.py`: SFT or DPO with a LoRA.

    python bench/peers_trl.py SPEC.json RESULT.json

Written the way a TRL user writes it (no ladder import): load the model and the JSON-lines data,
turn the chats into TRL's conversational formats, build ``SFTTrainer``/``DPOTrainer`` with a
``LoraConfig``, train, save the adapter. SPEC.json (from ``peers_setup.trl_spec``) holds the
settings every tool of the bench shares; RESULT.json gets the timings and the trainer's logs.

Loss masking: SFT rows become conversational prompt/completion rows (the prompt is every turn
before the assistant's answer), which TRL trains on the completion only; TRL's
``assistant_only_loss`` needs ``{% generation %}`` markers that SmolLM2's template lacks and
that TRL cannot patch in for it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

import torch  # noqa: E402  (imports are timed as part of the process, not of the stage)
from datasets import load_dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402


def build_trainer(spec: dict) -> SFTTrainer | DPOTrainer:
    """The trainer the spec describes, not yet trained."""
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    data = load_dataset("json", data_files=spec["data"], split="train")
    lora = spec["lora"]
    peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                             target_modules=lora["target_modules"], task_type="CAUSAL_LM")
    common = {"logging_steps": 1, "report_to": "none", "use_cpu": True, "bf16": False,
              "gradient_checkpointing": False, "dataloader_num_workers": 0, "disable_tqdm": True}
    if spec["stage"] == "sft":
        data = data.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                        remove_columns=data.column_names)
        args = SFTConfig(**spec["args"], **common)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config)
    else:
        data = data.map(lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}],
                                   "chosen": [{"role": "assistant", "content": r["chosen"]}],
                                   "rejected": [{"role": "assistant", "content": r["rejected"]}]})
        args = DPOConfig(**spec["args"], **common)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config)
    return trainer


def main(spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    imported = time.perf_counter()
    trainer = build_trainer(spec)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    adapter = Path(spec["out_dir"]) / "adapter"
    trainer.save_model(str(adapter))
    done = time.perf_counter()
    history = trainer.state.log_history
    result = {
        "train_s": train_s,
        "stage_s": done - imported,  # load, tokenize, train, save (imports excluded)
        "import_s": imported - STARTED,
        "adapter": str(adapter),
        "history": history,
    }
    Path(result_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
