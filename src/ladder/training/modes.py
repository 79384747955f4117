"""What the training modes need of the machine a stage trains on, and the model a stage trains.

The settings themselves (``finetuning``, ``attn_implementation``, ``use_liger_kernel``, the LoRA
variants) are declared and checked for their values in :class:`ladder.settings.TrainingSettings`.
What they need of the machine (a CUDA GPU, an optional package) is a fact about the machine the
stage *trains* on: :func:`machine_problems` lists it, the pipeline asks for it in pre-flight for
every stage that trains on this machine, and :func:`require_machine` raises the first problem
where the stage runs (a Modal container, a worker process), before anything is loaded.
:func:`load_training_model` is how a stage loads the model it trains, whatever its mode.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ladder.checkpoint import Checkpoint

__all__ = [
    "load_training_model",
    "machine_problems",
    "merged_input",
    "require_machine",
    "stage_machine_problems",
    "uses_adapter",
]

logger = logging.getLogger(__name__)

# attn_implementation -> (FlashAttention version, what to install)
_FLASH = {
    "flash_attention_2": (2, "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": (3, "install flash-attn-3 (FlashAttention 3, for Hopper GPUs)"),
    "flash_attention_4": (4, "pip install flash-attn-4"),
}


def uses_adapter(settings: Any) -> bool:
    """Whether the stage trains an adapter (``lora`` or ``qlora``) rather than every weight."""
    return getattr(settings, "finetuning", "lora") in ("lora", "qlora")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or half-installed
        return False


def _flash_attention_available(version: int) -> bool:
    """transformers' own answer: the package, or its hub-kernel fallback through ``kernels``."""
    from transformers.utils import import_utils

    check = getattr(import_utils, f"is_flash_attn_{version}_available", None)
    return bool(check is not None and check(kernels_fallback_ok=True))


def _gpu_and_package(device: str, what: str, why: str, fix: str,
                     missing: Callable[[], Exception | None]) -> list[tuple[str, Exception]]:
    """A setting that needs a CUDA GPU and a package: its unmet need here, as ``(message, error)``."""
    if not device.startswith("cuda"):
        message = f"{what} needs a CUDA GPU ({why}), and this machine has {device}; {fix}"
        return [(message, ConfigError(message))]
    error = missing()
    return [] if error is None else [(f"{what}: {error}", error)]


def _problems(settings: Any, device: str) -> list[tuple[str, Exception]]:
    """``(message, the error to raise)`` for every requirement ``settings`` has that is not met here."""
    found: list[tuple[str, Exception]] = []
    if getattr(settings, "finetuning", "lora") == "qlora":
        found += _gpu_and_package(
            device, "finetuning: qlora", "bitsandbytes' 4-bit kernels",
            "use finetuning: lora here, or run the stage on a GPU (executor: modal)",
            lambda: None if _installed("bitsandbytes") else MissingDependencyError(
                "bitsandbytes (for finetuning: qlora)", extra="quant"))
    if getattr(settings, "use_liger_kernel", False):
        found += _gpu_and_package(
            device, "use_liger_kernel: true", "Liger's kernels are Triton kernels", "set use_liger_kernel: false here",
            lambda: None if _installed("liger_kernel") else MissingDependencyError(
                "liger-kernel (for use_liger_kernel: true)", package="liger-kernel"))
    attn = getattr(settings, "attn_implementation", None)
    if attn in _FLASH:
        version, install = _FLASH[attn]
        found += _gpu_and_package(
            device, f"attn_implementation: {attn}", f"FlashAttention {version}",
            "use sdpa (or leave attn_implementation unset)",
            lambda: None if _flash_attention_available(version) else ConfigError(
                f"FlashAttention {version} is not installed: {install} (or pip install kernels, which fetches it "
                "from the hub); or use sdpa"))
    elif isinstance(attn, str) and "/" in attn and not _installed("kernels"):
        error = MissingDependencyError(f"kernels (for attn_implementation: {attn})", package="kernels")
        found.append((f"attn_implementation: {error}", error))
    return found


def machine_problems(settings: Any, device: str | None = None) -> list[str]:
    """What ``settings`` (a :class:`~ladder.settings.TrainingSettings`) needs that this machine lacks.

    Example:
        >>> from ladder.settings import TrainingSettings
        >>> machine_problems(TrainingSettings(finetuning="qlora"), device="cpu")[0][:42]
        'finetuning: qlora needs a CUDA GPU (bitsan'
        >>> machine_problems(TrainingSettings(), device="cpu")
        []
    """
    if device is None:
        from ladder.training.models import device_name

        device = device_name()
    return [message for message, _ in _problems(settings, device)]


def stage_machine_problems(stage: Any, executor: Any = None) -> list[str]:
    """:func:`machine_problems` of a pipeline's stage that trains on this machine, naming the stage.

    A stage placed on a remote executor (``modal``) is checked there, where it trains, by
    :func:`load_training_model`; here it has none.
    """
    spec = (getattr(stage, "placement", None) or {}).get("executor", executor)
    name = spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, dict) else type(spec).__name__
    if str(name).lower().startswith("modal"):
        return []
    return [f"stage {stage.name!r}: {p}" for p in machine_problems(getattr(stage, "config", None))]


def require_machine(settings: Any, device: str | None = None) -> None:
    """Raise the first of :func:`machine_problems` (``ConfigError`` or ``MissingDependencyError``)."""
    if device is None:
        from ladder.training.models import device_name

        device = device_name()
    found = _problems(settings, device)
    if found:
        raise found[0][1]


def merged_input(checkpoint: Checkpoint, ctx: Any) -> Checkpoint:
    """The stage's input as a full model on disk: ``checkpoint`` itself, or, for a chain of
    adapters, its merge written once under ``ctx.trainer_dir`` (removed with it after publication).

    A stage needs this where something loads the input *by path* rather than through
    :func:`~ladder.training.models.load_model`: QLoRA quantizes while loading from disk, and under full fine-tuning TRL's
    DPO, GRPO and RLOO trainers load their frozen reference copy from the model's
    ``config._name_or_path``.
    """
    if not checkpoint.adapters:
        return checkpoint
    import attrs

    from ladder.layout import MODEL_DIR

    out = Path(ctx.trainer_dir) / f"input-{MODEL_DIR}"
    done = out / ".merged"
    if not (done.is_file() and done.read_text(encoding="utf-8") == checkpoint.fingerprint):
        from ladder.training.models import default_dtype, load_model, load_tokenizer
        from ladder.training.publish import save_model_dir

        logger.info("merging the input's %d adapters into %s (QLoRA and TRL's reference load it from disk)",
                    len(checkpoint.adapters), out)
        # Merged on the CPU in the dtype training loads (bf16 on GPUs), so the GPU stays free.
        model = load_model(checkpoint, ctx.options, kind=checkpoint.kind, dtype=default_dtype(), device="cpu")
        save_model_dir(model, load_tokenizer(checkpoint, ctx.options), out, chat_template=checkpoint.chat_template,
                       eos_ids=list(checkpoint.eos_token_ids) or None)
        del model
        done.write_text(checkpoint.fingerprint, encoding="utf-8")
    return attrs.evolve(checkpoint, path=str(out), revision=None, adapters=())


def load_training_model(checkpoint: Checkpoint, ctx: Any, settings: Any, *, kind: str = "policy",
                        num_labels: int = 1, on_disk: bool = False) -> PreTrainedModel:
    """The model a stage trains, as its settings ask (:func:`~ladder.training.models.load_model` with ``settings``).

    First checks what the settings need of this machine (a GPU for QLoRA, Liger or FlashAttention;
    their packages) and raises the first unmet need (:func:`require_machine`).
    A LoRA on a CPU with native bf16 under ``precision: bf16`` loads its frozen base in bf16
    (:func:`~ladder.training.models.frozen_base_dtype`).
    Under ``finetuning: full`` or ``qlora``, or with ``on_disk`` (vLLM rollouts load the model's
    path), a chain-of-adapters input is merged to disk first (:func:`merged_input`).
    """
    from ladder.training.models import frozen_base_dtype, load_model

    require_machine(settings)
    if on_disk or getattr(settings, "finetuning", "lora") in ("full", "qlora"):
        checkpoint = merged_input(checkpoint, ctx)
    return load_model(checkpoint, ctx.options, kind=kind, num_labels=num_labels, settings=settings,
                      dtype=frozen_base_dtype(settings))
