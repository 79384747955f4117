"""The tokens a chat format is written in: adding the missing ones, and training their rows.

A base model given a named format (``chat_template: chatml``) may lack its special tokens:
they are added to the tokenizer as special tokens (saved with it), the model's embeddings are
resized when the new ids do not fit, and, as TRL's ``clone_chat_template`` does, the new rows
start from the mean of the old ones. A new token's rows, and an end-of-turn token whose output
row looks untrained (a base model that never saw its chat format), must learn during SFT, or the
model never learns to stop. Under LoRA the embedding matrix and the output layer are frozen, so
they are trained whole (``lora.modules_to_save``, as Axolotl and LLaMA-Factory ask for when
adding tokens) and merged into the published model with the adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ladder.training.chat_format import end_of_turn_token, looks_untrained

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["add_special_tokens", "fit_embeddings", "tokens_to_train", "train_token_rows"]

logger = logging.getLogger(__name__)


def add_special_tokens(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str]) -> list[str]:
    """Add those of ``tokens`` the tokenizer lacks, as special tokens; return the added ones."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:  # as extra special tokens: never split, skipped when decoding, saved with the tokenizer
        new = [AddedToken(t, special=True, normalized=False) for t in missing]
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
        logger.info("added the chat format's special tokens %s to the tokenizer", ", ".join(missing))
    return missing


def fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Resize the model's embeddings when the tokenizer has ids past them; return whether it did.

    A model whose embedding matrix is already larger than its vocabulary (Qwen2.5 pads it) keeps
    its size: the new ids fit.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    logger.info("resized the model's embeddings from %d to %d rows for the added tokens", rows, len(tokenizer))
    return True


def tokens_to_train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, template: str,
                    added: Sequence[str]) -> list[int]:
    """Ids whose rows SFT must train: the added tokens, and the end-of-turn token when its output
    row looks untrained."""
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in added]
    token = end_of_turn_token(tokenizer, template)
    if token is not None:
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid not in ids and looks_untrained(model, tid):
            logger.warning("the end-of-turn token %s looks untrained in this model (a base model that never saw "
                           "its chat format): SFT trains the embeddings and lm_head with it so the model learns "
                           "to stop (under LoRA that adds them whole to the trained weights)", token)
            ids.append(tid)
    return ids


def _module_name(model: Any, module: Any) -> str | None:
    return next((name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m is module), None)


def train_token_rows(peft_config: Any, model: PreTrainedModel, token_ids: Sequence[int]) -> None:
    """Make the rows of ``token_ids`` trainable in a LoRA run (``peft_config`` is changed).

    The input embeddings and the output layer are trained whole (``modules_to_save``), tied to
    each other when the model ties them. PEFT's ``trainable_token_indices`` would train the rows
    alone, but TRL 1.16's SFT computes the loss with the output layer's ``weight`` directly
    (its fused LM head), past the wrapper that adds the trained rows: the loss would not see
    them. Under full fine-tuning (``peft_config`` ``None``) every row trains anyway.
    """
    if not token_ids or peft_config is None:
        return
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = [_module_name(model, embeddings), _module_name(model, head) if head is not None else None]
    saved = list(getattr(peft_config, "modules_to_save", None) or [])
    added = [n for n in names if n is not None and n not in saved]
    if not added:
        return
    peft_config.modules_to_save = saved + added
    if head is not None and head.weight is embeddings.weight:
        peft_config.ensure_weight_tying = True  # one trained copy, as the model has one matrix
    logger.info("training %s whole (lora.modules_to_save) so the chat tokens %s learn", " and ".join(added),
                sorted(set(int(t) for t in token_ids)))
