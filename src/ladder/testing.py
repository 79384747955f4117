"""Helpers for testing ladder and its plugins without network: tiny random models.

``build_tiny_model(path)`` trains a small byte-level BPE tokenizer on built-in text, adds the
ChatML special tokens and a ChatML chat template (without ``{% generation %}`` markers, like
most real base models), builds a randomly initialised Qwen2 model from a seeded config and
saves both as a normal Hugging Face model directory in safetensors.

``build_tiny_family_model(path, family, chat_template=...)`` does the same for one of the model
families people bring (:data:`TINY_FAMILIES`: Qwen2.5, Llama 3, SmolLM2, Gemma 3, Phi-3/4,
Mistral): the family's architecture (Llama, Gemma 3, Phi-3, Mistral, Qwen2 configs, tiny), its
special tokens, BOS/EOS/pad tokens and stop tokens, and the chat template you give it (a real
one, e.g. a model's ``chat_template.jinja``; ``None`` for a base model without one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["build_tiny_model", "build_tiny_family_model", "CHATML_TEMPLATE", "TINY_CORPUS", "TINY_FAMILIES",
           "TinyFamily"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_CORPUS = [
    "What is 2 + 3? The answer is 5.",
    "Add 7 and 8 to get 15. <answer>15</answer>",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "A recipe for bread: mix flour, water, yeast and salt, then bake.",
    "Explain photosynthesis: plants turn sunlight, water and air into sugar.",
    "I am a helpful assistant. I cannot help with that request.",
    "Yes. No. Good answer. Bad answer. Short and direct.",
    "one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9",
    "Question: how many apples? Answer: 12 apples in total.",
    "system user assistant hello world please thank you",
] * 20


def _tokenizer(specials: list[str], vocab_size: int, **tokens: Any) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on :data:`TINY_CORPUS` whose first ids are ``specials``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS, trainer=trainer)
    bos = tokens.pop("add_bos", None)
    if bos:  # like Llama 3's and Gemma's tokenizers: encoding text prepends BOS
        from tokenizers import processors

        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 400,
    tie_word_embeddings: bool = False,
) -> Path:
    """Write a tiny random Qwen2 causal LM + trained tokenizer to ``path``; return it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fast = _tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        vocab_size,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(path)

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    return path


@attrs.frozen
class TinyFamily:
    """What a tiny model of one family copies from the real ones.

    Attributes:
        architecture: the transformers config family (``qwen2``, ``llama``, ``gemma3_text``,
            ``mistral``, ``phi3``).
        special_tokens: the family's special tokens (the first ids of the tiny vocabulary).
        bos: the BOS token (``None``: the family has none); ``add_bos``: encoding text prepends it.
        eos: the tokenizer's EOS in the instruct models; ``base_eos`` in the base models.
        pad: the pad token (``None``: the family ships none).
        stop: the tokens the instruct models' ``generation_config.json`` stops on.
        tie_word_embeddings: whether the small models of the family tie ``lm_head`` to the embeddings.
    """

    architecture: str
    special_tokens: tuple[str, ...]
    bos: str | None
    eos: str
    base_eos: str
    pad: str | None
    stop: tuple[str, ...]
    tie_word_embeddings: bool
    add_bos: bool = False


_CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>")

#: The families :func:`build_tiny_family_model` builds, as their small real models are configured.
TINY_FAMILIES: dict[str, TinyFamily] = {
    # Qwen2.5-0.5B(-Instruct): no BOS, <|im_end|> ends a turn, <|endoftext|> pads.
    "qwen2.5": TinyFamily("qwen2", _CHATML, None, "<|im_end|>", "<|endoftext|>", "<|endoftext|>",
                          ("<|im_end|>", "<|endoftext|>"), True),
    # Llama-3.x(-Instruct): <|begin_of_text|> prepended on encode, <|eot_id|> ends a turn, no pad token.
    "llama3": TinyFamily("llama", _LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", None,
                         ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), True, add_bos=True),
    # SmolLM2-135M(-Instruct): a Llama with ChatML tokens; the instruct tokenizer's BOS is <|im_start|>.
    "smollm2": TinyFamily("llama", _CHATML, "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>",
                          ("<|im_end|>",), True),
    # gemma-3-*-it: <bos> prepended, role "model", <end_of_turn> ends a turn.
    "gemma3": TinyFamily("gemma3_text", ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
                         "<bos>", "<eos>", "<eos>", "<pad>", ("<eos>", "<end_of_turn>"), True, add_bos=True),
    # Phi-3/3.5-mini-instruct: <|user|>…<|end|>, EOS <|endoftext|>.
    "phi3": TinyFamily("phi3", ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>",
                                "<|system|>"), "<s>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>",
                       ("<|endoftext|>", "<|end|>"), False),
    # Phi-4-mini-instruct: Phi-3's turn tokens without newlines, plus tool tokens.
    "phi4-mini": TinyFamily("phi3", ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
                                     "<|tool|>", "<|/tool|>"), "<|endoftext|>", "<|endoftext|>", "<|endoftext|>",
                            "<|endoftext|>", ("<|endoftext|>", "<|end|>"), True),
    # Mistral-7B-Instruct / Mistral-Nemo-Instruct: <s> prepended, [INST]…[/INST], the answer ends with </s>.
    "mistral": TinyFamily("mistral", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"), "<s>", "</s>", "</s>", None,
                          ("</s>",), False, add_bos=True),
}


def _family_config(family: TinyFamily, vocab: int, hidden: int, layers: int, ids: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    common: dict[str, Any] = dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=family.tie_word_embeddings, **ids,
    )
    if family.architecture == "gemma3_text":  # the real 1B's shape in miniature: sliding + global layers
        common.update(head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4, sliding_window=16,
                      layer_types=["sliding_attention", "full_attention"][:layers] * (layers // 2 or 1))
    if family.architecture == "phi3":
        common.update(original_max_position_embeddings=512)
    return AutoConfig.for_model(family.architecture, **common)


def build_tiny_family_model(
    path: str | os.PathLike[str],
    family: str,
    *,
    chat_template: str | None,
    instruct: bool | None = None,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 400,
) -> Path:
    """Write a tiny random model of ``family`` (:data:`TINY_FAMILIES`) to ``path``; return it.

    Args:
        path: the folder to write (a normal Hugging Face model directory, safetensors).
        family: ``qwen2.5``, ``llama3``, ``smollm2``, ``gemma3``, ``phi3``, ``phi4-mini`` or ``mistral``.
        chat_template: the chat template the tokenizer carries (the real text of a model's
            template); ``None`` writes a base model without one.
        instruct: configure EOS and stop tokens as the family's instruct models do (default:
            when there is a chat template) or as its base models (the document EOS).
    """
    import torch
    from transformers import AutoModelForCausalLM

    spec = TINY_FAMILIES[family]
    instruct = chat_template is not None if instruct is None else instruct
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    named = {"bos_token": spec.bos, "eos_token": spec.eos if instruct else spec.base_eos, "pad_token": spec.pad,
             "unk_token": "<unk>" if "<unk>" in spec.special_tokens else None}
    named = {k: v for k, v in named.items() if v is not None}
    extra = [t for t in spec.special_tokens if t not in named.values()]
    fast = _tokenizer(list(spec.special_tokens), vocab_size, add_bos=spec.bos if spec.add_bos else None,
                      additional_special_tokens=extra, **named)
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(path)

    torch.manual_seed(seed)
    ids = {"bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id, "pad_token_id": fast.pad_token_id}
    model = AutoModelForCausalLM.from_config(_family_config(spec, len(fast), hidden_size, num_layers, ids))
    stop = [fast.convert_tokens_to_ids(t) for t in spec.stop] if instruct else [fast.eos_token_id]
    model.generation_config.eos_token_id = stop if len(stop) > 1 else stop[0]
    model.generation_config.bos_token_id = fast.bos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    return path
