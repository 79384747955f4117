"""The held-out results of `bench/peers.py`, measured one way for every tool's output.

    python bench/peers_eval.py JOB.json RESULT.json

Each tool's LoRA adapter is merged into the same base model folder with PEFT
(``merge_and_unload``, fp32) and saved with the base's tokenizer and chat template; then
:func:`ladder.insight.observe`, the function a ladder run observes every checkpoint with, answers
the stage's held-out set: the demo's verifiable problems for SFT (greedy, tag-format rate and
exact match; the first 32, one generation batch) and its held-out preference pairs for DPO (the model's own log-prob preference,
and the implicit reward against the base model). The base model is measured first, on both.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def merged_folder(base: str, adapter: str, dest: Path) -> Path:
    """``base`` with the adapter in ``adapter`` merged, saved in ``dest`` with the base's tokenizer."""
    from peft import PeftModel

    from ladder.training.models import load_model, load_tokenizer

    model = PeftModel.from_pretrained(load_model(base), adapter).merge_and_unload()
    model.save_pretrained(dest)
    load_tokenizer(base).save_pretrained(dest)
    return dest


def main(job_path: str, result_path: str) -> int:
    from ladder.fingerprints import base_checkpoint
    from ladder.generation import GenerationSettings
    from ladder.insight import observe
    from ladder.observation import load_eval_rows

    job = json.loads(Path(job_path).read_text())
    work = Path(job["work"])
    settings = GenerationSettings(**job["generation"])
    rows = load_eval_rows({"verifiable": job["eval"]["sft"], "preference": job["eval"]["dpo"]})
    limit = job["rows"]
    rows = {"verifiable": rows["verifiable"][: limit["sft"]], "preference": rows["preference"][: limit["dpo"]]}
    kind = {"sft": "verifiable", "dpo": "preference"}
    base = base_checkpoint(job["base"])
    started = time.perf_counter()
    # The base first: its preference scores are kept in this process as the implicit reward's reference.
    result: dict[str, Any] = {"base": observe(base, work / "base", probes=[], settings=settings,
                                              evals={**rows, "behaviour": False})["eval"]}
    result["base"]["seconds"] = round(time.perf_counter() - started, 1)
    result["outputs"] = []
    for out in job["outputs"]:
        started = time.perf_counter()
        folder = merged_folder(job["base"], out["adapter"], work / f"{out['tool']}-{out['stage']}")
        evals = {kind[out["stage"]]: rows[kind[out["stage"]]], "behaviour": False}
        observed = observe(base_checkpoint(folder), folder / "observed", probes=[], evals=evals, settings=settings,
                           reference=base)
        shutil.rmtree(folder)  # 540 MB each
        result["outputs"].append({**out, "eval": observed["eval"], "seconds": round(time.perf_counter() - started, 1)})
    Path(result_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
