"""Loading models and tokenizers, and choosing device and precision."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError, StageError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ladder.checkpoint import Checkpoint

__all__ = [
    "unwrapped",
    "device_name",
    "precision",
    "cpu_has_native_bf16",
    "inference_dtype",
    "frozen_base_dtype",
    "base_weights_dtype",
    "float32_trainable",
    "default_dtype",
    "load_tokenizer",
    "load_model",
    "load_options",
    "quantization_config",
    "is_quantized",
]

logger = logging.getLogger(__name__)


def device_name() -> str:
    """``"cuda"`` when a GPU is visible, ``"mps"`` on Apple silicon, else ``"cpu"``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Where it does, a bf16-autocast LoRA step takes ~0.7x the fp32 time and bf16 weights generate
    in ~0.6x (``bench/cpu_precision.py``); where it does not, bf16 is emulated and slower.
    """
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or a private API that moved
        return False


def precision(requested: str | None = "auto", device: str | None = None) -> dict[str, bool]:
    """TRL/transformers ``bf16``/``fp16`` (and, on CPU, ``use_cpu``) flags for this device.

    TRL defaults to ``bf16=True``, which fails on CPU. ``"auto"`` picks bf16 on GPUs that
    support it, fp16 on older GPUs, and full fp32 on CPU (the same numbers on every CPU).
    ``"bf16"`` on a CPU trains under bf16 autocast (~1.5x faster where the CPU has native bf16
    units, :func:`cpu_has_native_bf16`; a LoRA's frozen base in bf16, :func:`frozen_base_dtype`,
    full fine-tuning from float32 master weights); on a CPU without them bf16 would be
    emulated and slower than fp32, and memory is rarely what limits CPU training, so ladder
    warns and trains in fp32 there. ``"fp16"`` needs a GPU.
    """
    import torch

    requested = (requested or "auto").lower()
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"precision must be auto, bf16, fp16 or fp32, got {requested!r}")
    device = device or device_name()
    on_cpu = device == "cpu"
    if requested == "auto":
        if device.startswith("cuda") and torch.cuda.is_available():
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            requested = "fp32"
    if on_cpu and requested == "fp16":
        raise ConfigError("precision fp16 needs a GPU; on CPU use bf16 or fp32 (or auto)")
    if on_cpu and requested == "bf16" and not cpu_has_native_bf16():
        logger.warning("precision bf16: this CPU has no native bf16 units, so bf16 would be slower than "
                       "fp32 here; training in fp32")
        requested = "fp32"
    flags = {"bf16": requested == "bf16", "fp16": requested == "fp16"}
    if on_cpu:
        flags["use_cpu"] = True  # the Trainer accepts bf16 on CPU only when told so
    return flags


def default_dtype(device: str | None = None) -> torch.dtype:
    """The dtype :func:`load_model` loads weights in on ``device`` unless told otherwise.

    bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPUs, for training and
    inference alike. On a CPU, ``precision: bf16`` training autocasts (a LoRA's frozen base loads
    in bf16 there, :func:`frozen_base_dtype`); inference stays float32 although bf16 weights
    would generate faster, because bf16 greedy answers depend on how prompts are batched
    (rounding breaks near-ties differently with different padding), and a probe must read the
    same whatever else is asked with it. A run that prefers speed asks for
    ``generation: {precision: bf16}`` (:func:`inference_dtype`).
    """
    import torch

    device = device or device_name()
    if not device.startswith("cuda"):
        return torch.float32
    flags = precision("auto", device)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32


def frozen_base_dtype(settings: Any, device: str | None = None) -> torch.dtype | None:
    """The dtype a LoRA stage loads its frozen base weights in, where it differs from :func:`default_dtype`.

    On a CPU with native bf16 (:func:`cpu_has_native_bf16`), a LoRA stage with ``precision: bf16``
    loads its base in bfloat16, as a GPU run does: autocast would round every float32 base weight
    to bf16 for its matmuls anyway, and casting the 135M weights of the demo's model on every
    forward was 14% of a step. PEFT keeps the adapter itself in float32 (its master weights), and
    publication merges the adapter into the float32 input weights
    (:func:`ladder.training.publish.publish`), so published checkpoints keep full
    precision. ``None`` everywhere else: full fine-tuning keeps float32 master weights, QLoRA
    quantizes, and fp32 or ``auto`` means float32 on a CPU.
    """
    device = (device or device_name()).split(":")[0]
    if (device != "cpu" or getattr(settings, "finetuning", "lora") != "lora"
            or str(getattr(settings, "precision", "auto")).lower() != "bf16" or not cpu_has_native_bf16()):
        return None
    import torch

    return torch.bfloat16


def float32_trainable(model: Any) -> int:
    """Cast ``model``'s trainable 16-bit parameters on a CPU to float32 (their master weights).

    Under :func:`frozen_base_dtype` the base is bf16, and so are the copies PEFT trains whole beside
    the LoRA (``modules_to_save``: a reward model's head, chat tokens' embeddings), which AdamW
    would otherwise update in bf16 (LLaMA-Factory upcasts trainable parameters the same way).
    PEFT already keeps LoRA weights in float32. Returns how many parameters were cast.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.device.type == "cpu" and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            cast += 1
    return cast


def base_weights_dtype(model: Any) -> torch.dtype:
    """The dtype of ``model``'s base weights: its first frozen floating-point parameter's (a
    LoRA's base), or, where everything trains, its first parameter's."""
    params = list(model.parameters())
    frozen = [p for p in params if not p.requires_grad and p.dtype.is_floating_point]
    return (frozen or params)[0].dtype


def inference_dtype(precision: str = "auto", device: str | None = None) -> torch.dtype:
    """The dtype probes and evaluations load weights in, for ``generation.precision``.

    ``"auto"`` is :func:`default_dtype`; ``"fp32"`` is float32 anywhere; ``"bf16"`` is bfloat16
    where the device multiplies it natively (a GPU that supports it, a CPU with AVX512-BF16 or
    AMX) and :func:`default_dtype` elsewhere, where bf16 would be emulated and slower.
    """
    import torch

    device = device or device_name()
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        on_gpu = device.startswith("cuda") and torch.cuda.is_available()
        if (on_gpu and torch.cuda.is_bf16_supported()) or (device == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        logger.info("generation precision bf16: %s has no native bf16; using %s", device,
                    str(default_dtype(device)).removeprefix("torch."))
    elif precision != "auto":
        raise ConfigError(f"generation precision must be auto, fp32 or bf16, got {precision!r}")
    return default_dtype(device)


def load_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments from run options (safe defaults).

    ``trust_remote_code`` is off and only safetensors weights are accepted unless the recipe
    opts in (``trust_remote_code: true``, ``allow_pickle_weights: true``).
    """
    options = options or {}
    kwargs: dict[str, Any] = {
        "trust_remote_code": bool(options.get("trust_remote_code", False)),
        "use_safetensors": None if options.get("allow_pickle_weights") else True,
    }
    if options.get("revision"):
        kwargs["revision"] = options["revision"]
    token = options.get("hf_token") or os.environ.get("HF_TOKEN")
    if token:
        kwargs["token"] = token
    return kwargs


def _source(checkpoint: Checkpoint | str | os.PathLike[str]) -> tuple[str, str | None]:
    if isinstance(checkpoint, (str, os.PathLike)):
        return str(checkpoint), None
    return checkpoint.path, checkpoint.revision


def _adapters(checkpoint: Checkpoint | str | os.PathLike[str]) -> tuple[str, ...]:
    return () if isinstance(checkpoint, (str, os.PathLike)) else tuple(checkpoint.adapters)


def load_tokenizer(
    checkpoint: Checkpoint | str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> PreTrainedTokenizerBase:
    """Load the tokenizer; make sure it has a pad token (EOS when none is set)."""
    from transformers import AutoTokenizer

    path, revision = _source(checkpoint)
    if _adapters(checkpoint):  # a chain of adapters: the last stage saved its tokenizer beside its adapter
        path, revision = _adapters(checkpoint)[-1], None
    kwargs = load_options({**(options or {}), "revision": revision or (options or {}).get("revision")})
    kwargs.pop("use_safetensors", None)
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise StageError(
            f"could not load the tokenizer of {path!r}: {exc}. Check the path or hub id "
            f"(offline? set HF_HUB_OFFLINE=0 and log in with `hf auth login` for gated models)."
        ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    checkpoint: Checkpoint | str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    *,
    kind: str = "policy",
    dtype: torch.dtype | str | None = None,
    device: str | None = None,
    num_labels: int = 1,
    settings: Any = None,
) -> PreTrainedModel:
    """Load a full model for training or inference: the one place ladder loads weights.

    A checkpoint that is a chain of adapters (``merge: final``) loads its full weights and
    applies and merges each adapter in order, in memory (:func:`ladder.training.lora.apply_adapters`).

    Args:
        checkpoint: a :class:`Checkpoint`, a local directory or a hub id.
        options: run options (see :func:`load_options`).
        kind: ``"policy"`` loads a causal LM; ``"reward"`` a sequence classifier.
        dtype: defaults to :func:`default_dtype` (bfloat16 on GPUs that support it, float16 on
            older GPUs, float32 on CPUs).
        device: where to put the model; defaults to :func:`device_name`.
        settings: a stage's :class:`~ladder.settings.TrainingSettings`: its ``attn_implementation``
            is passed to ``from_pretrained``, and under ``finetuning: qlora`` the weights load
            quantized to 4-bit NF4 (:func:`ladder.training.modes.quantization_config`) and are
            prepared for k-bit training (PEFT's ``prepare_model_for_kbit_training``).
    """
    if settings is not None and getattr(settings, "finetuning", None) == "qlora":
        return _load_quantized(checkpoint, options, kind=kind, num_labels=num_labels, settings=settings)

    path, revision = _source(checkpoint)
    device = device or device_name()
    if device == "cuda" and os.environ.get("LOCAL_RANK"):  # one process per GPU under accelerate
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if dtype is None:
        dtype = default_dtype(device.split(":")[0])
    cls, kwargs = _pretrained(revision, options, kind=kind, num_labels=num_labels, settings=settings)
    try:
        model = cls.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as exc:
        hint = ""
        if "safetensors" in str(exc).lower() or not any(Path(path).glob("*.safetensors")):
            hint = (
                " ladder loads safetensors weights only; set `allow_pickle_weights: true` in "
                "the recipe to accept .bin/.pt files you trust."
            )
        raise StageError(f"could not load the model {path!r}: {exc}.{hint}") from exc
    model = model.to(device)
    if _adapters(checkpoint):
        model = _with_adapters(model, checkpoint, options, kind=kind)
    return model


def _pretrained(revision: str | None, options: Mapping[str, Any] | None, *, kind: str, num_labels: int,
                settings: Any) -> tuple[Any, dict[str, Any]]:
    """The auto class and the ``from_pretrained`` keyword arguments for a model of ``kind``."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = load_options({**(options or {}), "revision": revision or (options or {}).get("revision")})
    if kind == "reward":
        kwargs["num_labels"] = num_labels
    if getattr(settings, "attn_implementation", None):
        kwargs["attn_implementation"] = settings.attn_implementation
    return (AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM), kwargs


def _with_adapters(model: Any, checkpoint: Any, options: Mapping[str, Any] | None, *, kind: str) -> Any:
    """``model`` with the checkpoint's adapters applied and merged, in order."""
    from ladder.training.lora import apply_adapters

    model, _ = apply_adapters(model, checkpoint.adapters)
    if kind == "policy" and checkpoint.eos_token_ids and getattr(model, "generation_config", None) is not None:
        # What a merged checkpoint's generation_config.json says (ladder.training.publish.save_model_dir).
        ids = [int(i) for i in checkpoint.eos_token_ids]
        model.generation_config.eos_token_id = ids if len(ids) > 1 else ids[0]
    if kind == "reward" and model.config.pad_token_id is None:
        # The classifier pools at the last token that is not the pad token; a merged reward model
        # saves it in its config, a chain of adapters has it in the tokenizer beside the last one.
        model.config.pad_token_id = load_tokenizer(checkpoint, options).pad_token_id
    # What TRL and the model card read as the model's origin: the weights at `path` are only its start.
    model.config._name_or_path = checkpoint.tokenizer_path
    return model


def _load_quantized(checkpoint: Checkpoint | str | os.PathLike[str], options: Mapping[str, Any] | None, *,
                    kind: str, num_labels: int, settings: Any) -> PreTrainedModel:
    """QLoRA: the weights quantized to 4-bit NF4 while loading, on this process's GPU, prepared
    for k-bit training (norms in fp32, input gradients on for activation checkpointing)."""
    from peft import prepare_model_for_kbit_training

    if _adapters(checkpoint):
        raise ConfigError("finetuning: qlora loads quantized weights from a full model on disk; give it the merged "
                          "input (ladder.training.modes.merged_input), not a chain of adapters")
    path, revision = _source(checkpoint)
    cls, kwargs = _pretrained(revision, options, kind=kind, num_labels=num_labels, settings=settings)
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    dtype = default_dtype("cuda")
    try:
        model = cls.from_pretrained(path, dtype=dtype, quantization_config=quantization_config(dtype),
                                    device_map={"": device}, **kwargs)
    except OSError as exc:
        raise StageError(f"could not load the model {path!r} in 4 bits: {exc}") from exc
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def quantization_config(compute_dtype: torch.dtype | None = None) -> Any:
    """QLoRA's ``BitsAndBytesConfig``: 4-bit NF4 weights, double quantization, bf16 compute.

    These are the QLoRA paper's choices, and the defaults of TRL's, Axolotl's and
    LLaMA-Factory's QLoRA recipes.
    """
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
    )


def unwrapped(model: Any) -> Any:
    """The transformers model under a PEFT wrapper, or ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_quantized(model: Any) -> bool:
    """Whether ``model`` (or the model under a PEFT wrapper) holds bitsandbytes-quantized weights."""
    inner = unwrapped(model)
    return bool(getattr(inner, "is_loaded_in_4bit", False) or getattr(inner, "is_loaded_in_8bit", False))
