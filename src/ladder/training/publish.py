"""Publishing what a stage trained as a new checkpoint: :func:`publish`.

Saves the adapter, merges it into the input weights and verifies the merge (the merged model
must reproduce the adapter-on-base outputs), saves the full model in safetensors with its
tokenizer, chat template and generation config, and writes the model card.
"""

from __future__ import annotations

import json
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

__all__ = ["Published", "publish", "save_model_dir", "write_model_card"]

logger = logging.getLogger(__name__)


@attrs.frozen
class Published:
    """What :func:`publish` wrote.

    Attributes:
        checkpoint: the new checkpoint (paths inside ``ctx.work_dir``).
        model: the merged (or fully fine-tuned) model as saved, for measurements after training.
        metrics: what the publication measured, for ``stage_metrics``: ``merge_max_abs_diff``
            when an adapter was merged.
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
    model card listing the lineage and the settings (credentials redacted).

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
    from ladder.checkpoint import Checkpoint
    from ladder.configs import config_to_dict
    from ladder.training.lora import merge_and_verify, save_adapter

    model_dir = ctx.work_dir / MODEL_DIR
    adapter_dir = None
    metrics: dict[str, Any] = {}
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        adapter_dir = ctx.work_dir / ADAPTER_DIR
        save_adapter(model, adapter_dir)
        merged, metrics["merge_max_abs_diff"] = merge_and_verify(model, tokenizer, list(verify_texts))
    else:
        merged = model
    if kind == "reward":  # the classifier pools at the last token that is not the pad token
        merged.config.pad_token_id = tokenizer.pad_token_id
    save_model_dir(merged, tokenizer, model_dir, chat_template=chat_template,
                   eos_ids=list(eos_ids) if kind == "policy" else None)
    out = Checkpoint(
        path=str(model_dir),
        stage=ctx.stage_name or parent.stage,
        kind=kind,  # type: ignore[arg-type]
        parent=parent,
        fingerprint=ctx.fingerprint,
        chat_template=chat_template,
        eos_token_ids=tuple(eos_ids) if kind == "policy" else (),
        adapter_path=str(adapter_dir) if adapter_dir else None,
    )
    settings = config if isinstance(config, Mapping) else config_to_dict(config)
    write_model_card(model_dir, out, settings)
    return Published(out, merged, metrics)


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


def write_model_card(out_dir: Path, checkpoint: Checkpoint, config: Mapping[str, Any]) -> None:
    """A README.md model card listing the full chain the model came from."""
    chain = list(checkpoint.lineage())[::-1]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [ladder, trl, peft]",
        "---",
        f"# {checkpoint.stage} checkpoint (made by ladder)",
        "",
        "## Lineage",
        "",
    ]
    for i, node in enumerate(chain):
        lines.append(f"{i}. `{node.stage}` — fingerprint `{node.fingerprint}` — `{node.path}`")
    from ladder.redaction import redact

    settings = json.dumps(redact(dict(config)), indent=2, default=str)  # no credentials in a shareable card
    lines += ["", "## Stage settings", "", "```json", settings, "```", ""]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
