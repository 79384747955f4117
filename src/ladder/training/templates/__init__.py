"""Chat templates ladder ships: training variants with ``{% generation %}`` markers, and named
templates for base models.

Assistant-only loss needs ``{% generation %}``…``{% endgeneration %}`` around the assistant's
text in the chat template (transformers turns them into the assistant mask). Most models' own
templates lack them, and TRL 1.16 ships training variants for some families only. The ``.jinja``
files here fill the gaps that matter: the Llama 3.1 / 3.3 and 3.2 Instruct templates, which TRL
does not patch, and Qwen2.5 Instruct's, whose TRL variant also trains the newline that belongs
to the generation prompt, with the markers added (their rendering otherwise unchanged;
:mod:`ladder.training.templates.choice` checks that before using one). A base model without a chat template gets one by name
(``chat_template: chatml`` or ``llama3``, :data:`NAMED_TEMPLATES`), with the special tokens it
needs (:mod:`ladder.training.templates.tokens` adds the missing ones).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import attrs

__all__ = [
    "LADDER_TRAINING_TEMPLATES",
    "NAMED_TEMPLATES",
    "NamedTemplate",
    "chatml_training_template",
    "has_generation_markers",
    "named_template",
    "read_template",
]

#: ladder's training variants of model templates, by file name (tried on templates that use
#: the family's tokens; used only when verified to render like the model's own template).
LADDER_TRAINING_TEMPLATES = {
    "qwen2_5_training": "<|im_start|>",  # Qwen2.5 Instruct (TRL's variant also trains the newline of the prompt)
    "llama3_1_training": "<|start_header_id|>",  # Llama 3.1 and 3.3 Instruct (one text)
    "llama3_2_training": "<|start_header_id|>",  # Llama 3.2 Instruct
}


def has_generation_markers(template: str | None) -> bool:
    """Whether ``template`` marks the assistant's text with ``{% generation %}`` (any trim variant)."""
    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template or "") is not None


@cache
def read_template(name: str) -> str:
    """The text of the shipped template ``name`` (``templates/<name>.jinja``)."""
    return resources.files(__name__).joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def _jinja_escape(text: str | None) -> str:
    return (text or "").replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def chatml_training_template(default_system: str | None = None) -> str:
    """A ChatML template with generation markers; with an optional default system prompt
    (rendered when a chat has none, as SmolLM2's and Qwen2.5's templates do)."""
    head = (
        "{%- if messages[0]['role'] != 'system' %}"
        "{{- '<|im_start|>system\\n" + _jinja_escape(default_system) + "<|im_end|>\\n' }}"
        "{%- endif %}"
        if default_system is not None
        else ""
    )
    return (
        head + "{%- for message in messages %}"
        "{%- if message['role'] == 'assistant' %}"
        "{{- '<|im_start|>assistant\\n' }}"
        "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
        "{{- '\\n' }}"
        "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


@attrs.frozen
class NamedTemplate:
    """A chat format a recipe can name for a model that has none (``chat_template: chatml``).

    Attributes:
        name: what the recipe writes.
        special_tokens: tokens the format is written in; those the tokenizer lacks are added as
            special tokens (and the model's embeddings resized) before training.
        end_of_turn: the token that ends the assistant's turn (generation stops on it).
    """

    name: str
    special_tokens: tuple[str, ...]
    end_of_turn: str

    @property
    def text(self) -> str:
        """The template (it has generation markers)."""
        return chatml_training_template() if self.name == "chatml" else read_template(self.name)


#: The chat formats a recipe can name for a base model (``chat_template: <name>``).
NAMED_TEMPLATES = {
    "chatml": NamedTemplate("chatml", ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": NamedTemplate("llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
}


def named_template(value: str | None) -> NamedTemplate | None:
    """The named template ``value`` names (``"chatml"``, ``"llama3"``), or ``None`` for template text."""
    if not isinstance(value, str):
        return None
    return NAMED_TEMPLATES.get(value.strip().lower())
