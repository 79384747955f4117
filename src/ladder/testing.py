"""Helpers for testing ladder and its plugins without network: a tiny Qwen2 model.

``build_tiny_model(path)`` trains a small byte-level BPE tokenizer on built-in text, adds the
ChatML special tokens and a ChatML chat template (without ``{% generation %}`` markers, like
most real base models), builds a randomly initialised Qwen2 model from a seeded config and
saves both as a normal Hugging Face model directory in safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_model", "CHATML_TEMPLATE", "TINY_CORPUS"]

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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
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
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
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
