"""vLLM as a generation backend: the same prompts and token ids as the transformers backend."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.errors import MissingDependencyError
from ladder.generation import Conversation, Generation, GenerationSettings, _finish, encode_text, render_prompt
from ladder.training.chat_format import stop_token_ids

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["VLLMGenerator"]


class VLLMGenerator:
    """Generation with vLLM (``pip install 'ladder[vllm]'``; a CUDA GPU, or vLLM's CPU build).

    Prompts are rendered and tokenized by ladder (the same token ids as the transformers
    backend) and passed to vLLM as token ids; answers are decoded with the same tokenizer.

    Args:
        checkpoint: a local model directory or hub id.
        options: run options (``trust_remote_code``, ``revision``).
        settings: default decoding settings for :meth:`generate`.
        **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``, ``max_model_len``).
    """

    backend = "vllm"

    def __init__(
        self,
        checkpoint: Checkpoint | str | os.PathLike[str],
        options: Mapping[str, Any] | None = None,
        settings: GenerationSettings | None = None,
        **llm_kwargs: Any,
    ) -> None:
        from ladder.vllm_support import cpu_engine_kwargs, prepare_in_process

        prepare_in_process()
        try:
            from vllm import LLM
        except ImportError as exc:
            raise MissingDependencyError("vLLM", extra="vllm") from exc
        from transformers import GenerationConfig

        from ladder.training.models import load_tokenizer

        path = str(getattr(checkpoint, "path", checkpoint))
        options = dict(options or {})
        revision = getattr(checkpoint, "revision", None) or options.get("revision")
        self.settings = settings or GenerationSettings()
        self.tokenizer = load_tokenizer(checkpoint, options)
        try:
            gen_config: Any = GenerationConfig.from_pretrained(
                path, **({"revision": revision} if revision else {})
            )
        except OSError:
            gen_config = None
        holder = type("_Holder", (), {"generation_config": gen_config})()
        self.stops = stop_token_ids(holder, self.tokenizer)
        self.llm = LLM(
            model=path,
            tokenizer=path,
            revision=revision,
            seed=self.settings.seed,
            trust_remote_code=bool(options.get("trust_remote_code", False)),
            **{**cpu_engine_kwargs(), **_dtype_kwargs(self.settings.precision), **llm_kwargs},
        )

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings | None = None
    ) -> list[Generation]:
        from vllm import SamplingParams

        settings = settings or self.settings
        prompts = [encode_text(self.tokenizer, render_prompt(self.tokenizer, c)) for c in conversations]
        if not prompts:
            return []
        params = SamplingParams(
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p if not settings.greedy else 1.0,
            seed=None if settings.greedy else settings.seed,
            stop_token_ids=list(self.stops),
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], sampling_params=params, use_tqdm=False
        )
        # vLLM keeps the stop token in token_ids; _finish cuts it off and decodes the rest.
        return [_finish(list(o.outputs[0].token_ids), self.stops, self.tokenizer) for o in outputs]

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            torch.cuda.empty_cache()


def _dtype_kwargs(precision: str) -> dict[str, str]:
    """``vllm.LLM(dtype=...)`` for ``generation.precision``: the dtype the transformers backend
    loads in (:func:`ladder.training.models.inference_dtype`); ``auto`` leaves vLLM's choice on a
    GPU (the CPU build's is :func:`ladder.vllm_support.cpu_engine_kwargs`' float32)."""
    from ladder.vllm_support import vllm_cpu_build

    if precision == "auto" and not vllm_cpu_build():
        return {}
    from ladder.training.models import inference_dtype

    device = "cpu" if vllm_cpu_build() else "cuda"
    return {"dtype": str(inference_dtype(precision, device)).removeprefix("torch.")}
