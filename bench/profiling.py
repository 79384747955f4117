"""The instruments behind ``bench/profile_demo.py``: where a ladder run's time and FLOPs go.

Time is attributed to three labels at once: the *phase* (the base model's observation, a stage,
the report), the *activity* (model loading, training, rollouts, each observation part, merging,
saving, ...) and the *operation* (a generation's prefill or decode steps, a training forward or
backward pass, an optimizer step, making batches, ...). Each label is a stack: entering a part
pauses the one around it, so every second of the wall time is counted exactly once.

FLOPs are the model's useful matrix work: ``2 x (non-embedding parameters)`` per real (unpadded)
token for a forward pass, the output layer only for the positions whose logits are computed,
and the same again for a LoRA backward pass (activation gradients; the frozen weights get none).
A generation counts its prompt tokens and the tokens each row produced up to its stop token:
the steps a finished row keeps decoding in a batch are waste, recorded apart (``decode_rows``
against ``generated_tokens``). Attention scores are left out (a few % at these lengths), so the
achieved rate is, if anything, understated.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

OTHER = "other"


class Profile:
    """Exclusive time and FLOPs by (phase, activity, operation)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str, str], float] = defaultdict(float)
        self.flops: dict[tuple[str, str, str], float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)
        self.phase = "start-up"
        self.activities: list[str] = []
        self.ops: list[str] = []
        self.last = time.perf_counter()

    def key(self) -> tuple[str, str, str]:
        return self.phase, (self.activities or [OTHER])[-1], (self.ops or [OTHER])[-1]

    def flush(self) -> None:
        now = time.perf_counter()
        self.seconds[self.key()] += now - self.last
        self.last = now

    @contextlib.contextmanager
    def _push(self, stack: list[str], name: str) -> Iterator[None]:
        self.flush()
        stack.append(name)
        try:
            yield
        finally:
            self.flush()
            stack.pop()

    def activity(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._push(self.activities, name)

    def op(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._push(self.ops, name)

    @contextlib.contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        self.flush()
        outer, outer_acts, outer_ops = self.phase, self.activities, self.ops
        self.phase, self.activities, self.ops = name, [], []
        try:
            yield
        finally:
            self.flush()
            self.phase, self.activities, self.ops = outer, outer_acts, outer_ops

    def add_flops(self, flops: float, op: str | None = None) -> None:
        phase, activity, current = self.key()
        self.flops[(phase, activity, op or current)] += flops


def wrap(owner: Any, attr: str, around: Callable[..., contextlib.AbstractContextManager[Any]]) -> None:
    """Run every call of ``owner.attr`` inside ``around(*args, **kwargs)``."""
    original = getattr(owner, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with around(*args, **kwargs):
            return original(*args, **kwargs)

    timed.__wrapped__ = original  # type: ignore[attr-defined]
    timed.__name__ = getattr(original, "__name__", attr)
    setattr(owner, attr, timed)


def wrap_function(module: Any, name: str, around: Callable[..., Any]) -> None:
    """Wrap a module's function, and the same function wherever a loaded ladder module imported it."""
    original = getattr(module, name)
    wrap(module, name, around)
    wrapped = getattr(module, name)
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("ladder") and mod is not module and getattr(mod, name, None) is original:
            setattr(mod, name, wrapped)


class ModelCost:
    """Parameters a forward pass multiplies, per model (weakly keyed: models come and go)."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Any, tuple[int, int, bool]] = weakref.WeakKeyDictionary()

    def of(self, model: Any) -> tuple[int, int, bool]:
        """(body parameters, output-layer parameters, whether base weights train)."""
        if model not in self._cache:
            emb = model.get_input_embeddings()
            head = model.get_output_embeddings()
            skip = {id(emb.weight)} | ({id(head.weight)} if head is not None else set())
            body = sum(p.numel() for p in model.parameters() if id(p) not in skip)
            full = any(p.requires_grad for n, p in model.named_parameters()
                       if "lora_" not in n and id(p) not in skip)
            self._cache[model] = (body, head.weight.numel() if head is not None else 0, full)
        return self._cache[model]


def _real_tokens(ids: Any, mask: Any) -> int:
    if mask is not None and hasattr(mask, "shape") and tuple(mask.shape) == tuple(ids.shape):
        return int(mask.sum())
    return int(ids.numel())


def instrument(profile: Profile) -> None:
    """Patch transformers, TRL, torch and ladder so that ``profile`` sees a run's parts."""
    import accelerate
    import torch
    import transformers
    import trl
    from transformers import GenerationMixin, PreTrainedModel

    import ladder.evals.runner as runner
    import ladder.evaluate as evaluate
    import ladder.insight as insight
    import ladder.pipeline as pipeline
    import ladder.probes as probes
    import ladder.stages.dpo  # noqa: F401  (bind names before wrap_function looks for them)
    import ladder.stages.grpo  # noqa: F401
    import ladder.stages.sft  # noqa: F401
    import ladder.training.lora as lora
    import ladder.training.models as models
    import ladder.training.publish as publish
    from ladder.observation import Observation
    from ladder.training.rl import scan

    def act(name: str) -> Callable[..., Any]:
        return lambda *a, **k: profile.activity(name)

    def op(name: str) -> Callable[..., Any]:
        return lambda *a, **k: profile.op(name)

    # Phases: the base model's observation, each stage (training, publishing, observation), the report.
    wrap(Observation, "base", lambda *a, **k: profile.in_phase("base (observation)"))
    wrap(pipeline.Pipeline, "_run_stage", lambda self, stage, *a, **k: profile.in_phase(stage.name))
    wrap(pipeline.Pipeline, "_write_report", lambda *a, **k: profile.in_phase("report"))
    # Activities.
    wrap(pipeline.Pipeline, "validate", act("pre-flight"))
    wrap_function(models, "load_model", act("model loading"))
    wrap_function(models, "load_tokenizer", act("model loading"))
    for cls in (trl.SFTTrainer, trl.DPOTrainer, trl.GRPOTrainer, trl.RLOOTrainer):
        wrap(cls, "__init__", act("trainer set-up (data, PEFT)"))
    wrap(transformers.Trainer, "train", act("training"))
    for cls in (trl.GRPOTrainer, trl.RLOOTrainer):
        wrap(cls, "_generate_and_score_completions", act("RL: rollouts and scoring"))
        wrap(cls, "_calculate_rewards", op("rewards"))
    wrap_function(scan, "learnability_scan", act("RL: learnability scan"))
    wrap_function(evaluate, "heldout_preference", act("DPO: held-out pairs"))
    wrap_function(lora, "merge_and_verify", act("merge and verification"))
    wrap_function(publish, "save_model_dir", act("saving"))
    wrap_function(lora, "save_adapter", act("saving"))
    wrap(transformers.Trainer, "_save_checkpoint", act("saving"))
    wrap(insight, "observe", act("observation (other)"))
    wrap_function(probes, "run_probes", act("observation: probes"))
    wrap_function(runner, "run_behaviour", act("observation: behaviour suites"))
    wrap_function(evaluate, "verifiable_accuracy", act("observation: verifiable problems"))
    wrap_function(insight, "_preference", act("observation: preference pairs"))
    wrap_function(insight, "_regressions", act("observation: regressions"))
    # Operations.
    wrap(transformers.Trainer, "get_batch_samples", op("batches (collate, pad)"))
    for cls in (transformers.Trainer, trl.SFTTrainer, trl.DPOTrainer, trl.GRPOTrainer, trl.RLOOTrainer):
        if "compute_loss" in vars(cls):
            wrap(cls, "compute_loss", op("loss (outside the model)"))
    wrap(torch.optim.AdamW, "step", op("optimizer step"))
    _instrument_backward(profile, accelerate)
    _instrument_model(profile, PreTrainedModel, GenerationMixin)


def _instrument_backward(profile: Profile, accelerate: Any) -> None:
    original = accelerate.Accelerator.backward

    def backward(self: Any, loss: Any, **kwargs: Any) -> Any:
        with profile.op("backward"):
            out = original(self, loss, **kwargs)
            profile.add_flops(profile.counts.pop("_pending_backward", 0.0))
        return out

    accelerate.Accelerator.backward = backward


def _instrument_model(profile: Profile, pretrained: Any, generation: Any) -> None:
    import torch

    cost = ModelCost()
    state = {"depth": 0, "gen_depth": 0, "gen_calls": 0}
    original_call = pretrained.__call__
    original_generate = generation.generate

    def call(model: Any, *args: Any, **kwargs: Any) -> Any:
        state["depth"] += 1
        try:
            if state["depth"] > 1:
                return original_call(model, *args, **kwargs)
            if state["gen_depth"]:
                state["gen_calls"] += 1
                name = "generation: prefill" if state["gen_calls"] == 1 else "generation: decode"
                if state["gen_calls"] > 1:
                    ids = kwargs.get("input_ids", args[0] if args else None)
                    profile.counts["decode_rows"] += int(ids.shape[0]) if ids is not None else 0
                with profile.op(name):
                    return original_call(model, *args, **kwargs)
            training = torch.is_grad_enabled()
            with profile.op("forward (train)" if training else "forward (no grad)"):
                _count_forward(profile, cost, model, args, kwargs, training)
                return original_call(model, *args, **kwargs)
        finally:
            state["depth"] -= 1

    def generate(model: Any, *args: Any, **kwargs: Any) -> Any:
        if state["gen_depth"]:
            return original_generate(model, *args, **kwargs)
        state["gen_depth"], state["gen_calls"] = 1, 0
        try:
            with profile.op("generation (outside the model)"):
                out = original_generate(model, *args, **kwargs)
            _count_generation(profile, cost, model, args, kwargs, out)
            return out
        finally:
            state["gen_depth"] = 0

    import ladder.generation as ladder_generation

    original_decode = ladder_generation.decode

    def decode(model: Any, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        """ladder's decode loop (ladder.decode), counted as generate() is."""
        if state["gen_depth"]:
            return original_decode(model, input_ids, attention_mask, **kwargs)
        state["gen_depth"], state["gen_calls"] = 1, 0
        try:
            with profile.op("generation (outside the model)"):
                rows = original_decode(model, input_ids, attention_mask, **kwargs)
            _add_generation(profile, cost, model, int(attention_mask.sum()), sum(len(row) for row in rows))
            return rows
        finally:
            state["gen_depth"] = 0

    pretrained.__call__ = call
    generation.generate = generate
    ladder_generation.decode = decode


def _count_forward(profile: Profile, cost: ModelCost, model: Any, args: Any, kwargs: Any, training: bool) -> None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None or not hasattr(ids, "dim") or ids.dim() != 2:
        return
    body, head, full = cost.of(model)
    tokens = _real_tokens(ids, kwargs.get("attention_mask"))
    labels = kwargs.get("labels")
    keep = kwargs.get("logits_to_keep")
    if kwargs.get("fused_lm_head") and labels is not None:  # TRL's fused head: labelled positions only
        positions = int((labels != -100).sum())
    elif isinstance(keep, int) and keep > 0:
        positions = int(ids.shape[0]) * keep
    else:
        positions = tokens
    forward = 2.0 * (body * tokens + head * positions)
    profile.add_flops(forward)
    profile.counts["training_tokens" if training else "scored_tokens"] += tokens
    if training:  # activation gradients (all), weight gradients (full fine-tuning only)
        profile.counts["_pending_backward"] += forward * (2.0 if full else 1.0)


def _count_generation(profile: Profile, cost: ModelCost, model: Any, args: Any, kwargs: Any, out: Any) -> None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    sequences = getattr(out, "sequences", out)
    if ids is None or not hasattr(sequences, "shape"):
        return
    config = kwargs.get("generation_config") or model.generation_config
    eos = config.eos_token_id
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    width = int(ids.shape[1])
    new = 0
    for row in sequences[:, width:].tolist():
        n = len(row)
        for k, tid in enumerate(row):
            if tid in stops:
                n = k + 1
                break
        new += n
    _add_generation(profile, cost, model, _real_tokens(ids, kwargs.get("attention_mask")), new)


def _add_generation(profile: Profile, cost: ModelCost, model: Any, prompt: int, new: int) -> None:
    """One generation's tokens and FLOPs: the prompt's prefill (no output layer: only the last
    position's logits are computed) and each new token through the body and the output layer."""
    body, head, _ = cost.of(model)
    profile.counts["prompt_tokens"] += prompt
    profile.counts["generated_tokens"] += new
    profile.add_flops(2.0 * body * prompt, op="generation: prefill")
    profile.add_flops(2.0 * (body + head) * new, op="generation: decode")


def matmul_rate(dtype_name: str, threads: int, seconds: float = 1.5) -> dict[str, float]:
    """GFLOP/s of fp32 (or bf16) matrix products: 2048^3, and the demo model's MLP shape at 1024 tokens."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    out = {}
    for label, (m, k, n) in {"2048^3": (2048, 2048, 2048), "1024x576x1536": (1024, 576, 1536)}.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(2):
            a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            reps += 1
        out[label] = 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9
    return out


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for the record beside every timing."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
