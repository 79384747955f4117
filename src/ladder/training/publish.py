"""Publishing what a stage trained as a new checkpoint: :func:`publish`; merging a chain: :func:`merge_checkpoint`.

Saves the adapter, merges it into the input weights and verifies the merge (the merged model
must reproduce the adapter-on-base outputs), saves the full model in safetensors with its
tokenizer, chat template and generation config, and writes the model card. Under ``merge:
final`` an adapter stage keeps only its adapter (and tokenizer); the pipeline merges the last
stage's chain once, at the end (:func:`merge_checkpoint`). A QLoRA adapter, trained on 4-bit
weights, is merged onto the 16-bit input weights, reloaded for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.layout import ADAPTER_DIR, MODEL_DIR

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

__all__ = ["Published", "dir_bytes", "local_license", "merge_checkpoint", "publish", "save_model_dir",
           "write_model_card"]

logger = logging.getLogger(__name__)


@attrs.frozen
class Published:
    """What :func:`publish` wrote.

    Attributes:
        checkpoint: the new checkpoint (paths inside ``ctx.work_dir``).
        model: the merged (or fully fine-tuned) model as saved, for measurements after training;
            under ``merge: final``, the adapter-on-input model (the same outputs, nothing merged).
        metrics: what the publication measured, for ``stage_metrics``: ``disk_bytes`` (what it
            wrote), ``merge_max_abs_diff`` when an adapter was merged, and for QLoRA
            ``quantization_max_abs_diff`` (the 4-bit adapter model against the 16-bit merge).
    """

    checkpoint: Checkpoint
    model: Any
    metrics: dict[str, Any]


def publish(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    ctx: StageContext,
    *,
    parent: Checkpoint,
    config: Mapping[str, Any] | Any,
    chat_template: str | None,
    eos_ids: Sequence[int] = (),
    verify_texts: Sequence[str] = (),
    kind: str = "policy",
) -> Published:
    """Publish the trained model as a new checkpoint in ``ctx.work_dir``.

    With a PEFT model: saves the adapter to ``work_dir/adapter``, merges it and verifies the
    merge on ``verify_texts`` (logits at every position for a causal LM; hidden states and the
    score for a reward model). Then saves the full model to ``work_dir/model`` with
    ``chat_template`` and, for a policy, a generation config that stops on ``eos_ids``, and the
    model card listing the lineage and the settings (credentials redacted). A QLoRA adapter is
    merged onto the 16-bit input weights, reloaded for it, not onto its 4-bit training copy.

    Under ``ctx.merge == "final"`` an adapter is saved with the tokenizer and the model card and
    nothing is merged: the new checkpoint is the input's weights with the input's adapters and
    this one (``Checkpoint.adapters``); :func:`merge_checkpoint` merges the chain once, at the end.
    A fully fine-tuned model is saved whole in either mode.

    Args:
        model: the trained model: a ``PeftModel`` (merged here) or a plain model (full
            fine-tuning, saved as it is); :attr:`ladder.training.fit.Fitted.model`.
        tokenizer: the tokenizer saved beside the model.
        ctx: the stage's context (``work_dir``, ``stage_name``, ``fingerprint``).
        parent: the stage's input checkpoint (the new checkpoint's parent).
        config: the stage's settings (a config or a dict), for the model card.
        chat_template: the template the checkpoint carries.
        eos_ids: token ids that end a turn (a policy's ``generation_config.json``).
        verify_texts: a few rendered training texts to verify the merge on.
        kind: ``"policy"`` (a causal LM) or ``"reward"`` (a sequence classifier).

    Raises:
        MergeVerificationError: the merge does not reproduce the adapter; nothing is published.
    """
    from ladder.configs import config_to_dict
    from ladder.training.lora import save_adapter

    settings = config if isinstance(config, Mapping) else config_to_dict(config)
    card = {"stage_kind": ctx.stage_kind, "config_cls": None if isinstance(config, Mapping) else type(config)}
    texts = list(verify_texts)
    is_adapter = hasattr(model, "merge_and_unload")  # a PeftModel
    adapter_dir = ctx.work_dir / ADAPTER_DIR if is_adapter else None
    if adapter_dir is not None:
        save_adapter(model, adapter_dir)
    if adapter_dir is not None and getattr(ctx, "merge", "every_stage") == "final":
        # Only the adapter (and the tokenizer, which a chain loads from its last adapter's folder).
        _save_tokenizer(tokenizer, adapter_dir, chat_template)
        out = _checkpoint(ctx, parent, kind, chat_template, eos_ids, path=parent.path, revision=parent.revision,
                          adapters=(*parent.adapters, str(adapter_dir)), adapter_path=str(adapter_dir))
        write_model_card(adapter_dir, out, settings, **card)
        return Published(out, model, {"disk_bytes": dir_bytes(adapter_dir)})
    metrics: dict[str, Any] = {}
    if adapter_dir is not None:
        merged = _merge(model, tokenizer, ctx, parent, adapter_dir, texts, kind, metrics)
    else:
        merged = model
    if kind == "reward":  # the classifier pools at the last token that is not the pad token
        merged.config.pad_token_id = tokenizer.pad_token_id
    model_dir = ctx.work_dir / MODEL_DIR
    save_model_dir(merged, tokenizer, model_dir, chat_template=chat_template,
                   eos_ids=list(eos_ids) if kind == "policy" else None)
    out = _checkpoint(ctx, parent, kind, chat_template, eos_ids, path=str(model_dir),
                      adapter_path=str(adapter_dir) if adapter_dir else None)
    write_model_card(model_dir, out, settings, **card)
    metrics["disk_bytes"] = dir_bytes(model_dir) + (dir_bytes(adapter_dir) if adapter_dir else 0)
    return Published(out, merged, metrics)


def _checkpoint(ctx: StageContext, parent: Checkpoint, kind: str, chat_template: str | None,
                eos_ids: Sequence[int], **where: Any) -> Checkpoint:
    from ladder.checkpoint import Checkpoint

    return Checkpoint(
        stage=ctx.stage_name or parent.stage,
        kind=kind,  # type: ignore[arg-type]
        parent=parent,
        fingerprint=ctx.fingerprint,
        chat_template=chat_template,
        eos_token_ids=tuple(eos_ids) if kind == "policy" else (),
        **where,
    )


def _merge(model: Any, tokenizer: Any, ctx: StageContext, parent: Checkpoint, adapter_dir: Path,
           texts: list[str], kind: str, metrics: dict[str, Any]) -> Any:
    """The adapter merged into the input weights and verified (``metrics`` gets the checks)."""
    from ladder.training.lora import drop_autocast_wrapper, max_logit_diff, merge_and_verify
    from ladder.training.models import base_weights_dtype, default_dtype, is_quantized, load_model

    quantized = is_quantized(model)
    trained_in = base_weights_dtype(model)
    # the dtype the input loads in everywhere else (float32 on a CPU)
    full = default_dtype(str(model.get_input_embeddings().weight.device.type))
    if not quantized and trained_in == full:
        merged, metrics["merge_max_abs_diff"] = merge_and_verify(model, tokenizer, texts)
        return merged
    # QLoRA: merging into 4-bit weights would round the merge to 4 bits. As TRL's, Axolotl's and
    # LLaMA-Factory's merge scripts do, the adapter goes onto the 16-bit input weights instead.
    # A LoRA trained on a bf16 copy of a CPU's float32 base (`frozen_base_dtype`) likewise goes
    # onto the float32 input weights: merged into bf16 ones, updates below bf16's rounding step
    # would be lost.
    from peft import PeftModel

    drop_autocast_wrapper(model)
    base = load_model(parent, ctx.options, kind=kind)
    rows = model.get_input_embeddings().weight.shape[0]
    if base.get_input_embeddings().weight.shape[0] != rows:  # chat tokens added for training
        # their embeddings are trained whole (modules_to_save) and come with the adapter
        base.resize_token_embeddings(rows, mean_resizing=False)
    if kind == "reward":
        base.config.pad_token_id = tokenizer.pad_token_id
    merged, metrics["merge_max_abs_diff"] = merge_and_verify(PeftModel.from_pretrained(base, str(adapter_dir)),
                                                             tokenizer, texts)
    if quantized:
        metrics["quantization_max_abs_diff"] = max_logit_diff(model, merged, tokenizer, texts)
        logger.info("QLoRA adapter merged onto the 16-bit weights; 4-bit vs 16-bit max |logit diff| %.3g",
                    metrics["quantization_max_abs_diff"])
    else:  # the bf16 training copy mixes dtypes (float32 adapter and whole-trained copies): autocast only
        logger.info("adapter trained on a %s copy of the base merged onto the %s input weights",
                    str(trained_in).removeprefix("torch."), str(base_weights_dtype(merged)).removeprefix("torch."))
        metrics["trained_on_dtype"] = str(trained_in).removeprefix("torch.")
    return merged


def _save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path, chat_template: str | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(out_dir))


def dir_bytes(path: str | Path) -> int:
    """Bytes of the files below ``path`` (what a stage's artifacts take on disk)."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


#: Texts a final merge is verified on when the caller gives none: a chat turn and plain text.
_MERGE_CHECK_TURN = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."}]
_MERGE_CHECK_TEXT = "The capital of France is Paris. A recipe for bread: flour, water, yeast and salt."


def merge_checkpoint(
    checkpoint: Checkpoint,
    out_dir: str | Path,
    options: Mapping[str, Any] | None = None,
    *,
    verify_texts: Sequence[str] | None = None,
) -> tuple[Checkpoint, dict[str, Any]]:
    """Merge a chain-of-adapters checkpoint (``merge: final``) into one full model in ``out_dir/model``.

    Loads the full weights at ``checkpoint.path``, applies each adapter and merges it, in order,
    verifying every merge against its adapter-on-model outputs (:func:`ladder.training.lora.apply_adapters`),
    and saves the model with the last stage's tokenizer, chat template and stop tokens.

    Returns:
        ``(checkpoint, metrics)``: the same checkpoint (stage, fingerprint, lineage) with its
        weights at ``out_dir/model`` and no adapters; ``merge_max_abs_diff`` (one per adapter) and
        ``disk_bytes``.

    Raises:
        MergeVerificationError: a merge does not reproduce its adapter; nothing is written.
    """
    from ladder.training.lora import apply_adapters
    from ladder.training.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(checkpoint, options)
    if verify_texts is None:
        verify_texts = [_MERGE_CHECK_TEXT]
        if tokenizer.chat_template:
            verify_texts.insert(0, tokenizer.apply_chat_template(_MERGE_CHECK_TURN, tokenize=False))
    model = load_model(attrs.evolve(checkpoint, adapters=()), options, kind=checkpoint.kind)
    if checkpoint.kind == "reward":
        model.config.pad_token_id = tokenizer.pad_token_id
    model, diffs = apply_adapters(model, checkpoint.adapters, verify_texts=verify_texts, tokenizer=tokenizer)
    model_dir = Path(out_dir) / MODEL_DIR
    eos = [int(i) for i in checkpoint.eos_token_ids]
    save_model_dir(model, tokenizer, model_dir, chat_template=checkpoint.chat_template,
                   eos_ids=eos if checkpoint.kind == "policy" and eos else None)
    merged = attrs.evolve(checkpoint, path=str(model_dir), revision=None, adapters=(), adapter_path=None)
    write_model_card(model_dir, merged, {"merge": "final", "adapters": list(checkpoint.adapters)})
    logger.info("merged %d adapters into %s (max |logit diff| per merge: %s)", len(checkpoint.adapters), model_dir,
                ", ".join(f"{d:.2e}" for d in diffs))
    return merged, {"merge_max_abs_diff": diffs, "disk_bytes": dir_bytes(model_dir)}


def save_model_dir(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    chat_template: str | None,
    eos_ids: list[int] | None,
) -> None:
    """Save a full model in safetensors + tokenizer + chat template + generation config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if chat_template:
        tokenizer.chat_template = chat_template
    if eos_ids and getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def write_model_card(
    out_dir: Path, checkpoint: Checkpoint, config: Mapping[str, Any], *, stage_kind: str = "",
    config_cls: type | None = None,
) -> None:
    """The ``README.md`` model card: hub metadata, the lineage back to the base, the settings.

    No local path appears in it (see :mod:`ladder.card`); ``ladder push`` writes the card again
    with every stage's measured numbers.
    """
    from ladder.card import CardStage, describe_source, hub_id, render_card

    chain = list(checkpoint.lineage())[::-1]
    base = chain[0]
    lineage = [CardStage(name="base", kind="base", fingerprint=base.fingerprint, source=describe_source(base.path))]
    lineage += [CardStage(name=node.stage, kind="", fingerprint=node.fingerprint) for node in chain[1:-1]]
    lineage.append(CardStage.of_stage(checkpoint.stage, stage_kind, checkpoint.fingerprint, config_cls, config))
    text = render_card(lineage, title=f"{checkpoint.stage} checkpoint", base_model=hub_id(base.path),
                       license=local_license(base.path), kind=checkpoint.kind)
    (out_dir / "README.md").write_text(text, encoding="utf-8")


def local_license(model: str) -> str | None:
    """The ``license`` of a local model folder's own card (``README.md`` metadata), if it has one."""
    card = Path(model) / "README.md"
    if not card.is_file():
        return None
    try:
        from huggingface_hub import metadata_load

        value = (metadata_load(card) or {}).get("license")
    except Exception:  # a card whose header is not YAML: no license to carry over
        return None
    return str(value) if isinstance(value, str) and value else None
