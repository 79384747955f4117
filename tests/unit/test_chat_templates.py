"""Which template SFT trains with: ladder's training variants render exactly like the real
templates, the choice per family, prompt/completion masking, named templates and their tokens.

The real templates are in tests/data/chat_templates/ (sources in its README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ladder import ConfigError
from ladder.testing import build_tiny_family_model
from ladder.training.chat_format import chat_template_for, eos_token_ids
from ladder.training.templates import NAMED_TEMPLATES, has_generation_markers, named_template, read_template
from ladder.training.templates.choice import (
    SAMPLE_CHATS,
    completion_rows,
    prompt_prefix_problem,
    renders_like,
    sft_format,
    training_chat_template,
)

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                            "parameters": {"type": "object", "properties": {
                                                "a": {"type": "number"}, "b": {"type": "number"}}}}}]
TOOL_CHAT = [
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add",
                                                                           "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "content": "5"},
    {"role": "assistant", "content": "It is 5."},
]


def _real(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    cache: dict[tuple[str, str | None], Any] = {}

    def get(family: str, template: str | None = None) -> Any:
        if (family, template) not in cache:
            folder = tmp_path_factory.mktemp(family)
            path = build_tiny_family_model(folder, family, chat_template=_real(template) if template else None,
                                           hidden_size=16, num_layers=1)
            cache[(family, template)] = AutoTokenizer.from_pretrained(path)
        return cache[(family, template)]

    return get


def _render(tok: Any, template: str, chat: list[dict[str, Any]], **kwargs: Any) -> str:
    return tok.apply_chat_template(chat, tokenize=False, chat_template=template, **kwargs)


def _outcome(tok: Any, template: str, chat: list[dict[str, Any]], **kwargs: Any) -> str:
    """The rendering, or the error the template raises for this chat."""
    try:
        return _render(tok, template, chat, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a template's raise_exception
        return f"error: {exc}"


@pytest.mark.parametrize(("shipped", "family", "originals"), [
    ("qwen2_5_training", "qwen2.5", ["qwen2.5-instruct"]),
    ("llama3_1_training", "llama3", ["llama-3.1-instruct", "llama-3.3-instruct"]),
    ("llama3_2_training", "llama3", ["llama-3.2-instruct"]),
])
def test_ladders_training_variants_render_like_the_real_templates(shipped: str, family: str, originals: list[str],
                                                                 tokenizers: Any) -> None:
    variant = read_template(shipped)
    assert has_generation_markers(variant)
    tok = tokenizers(family)
    for original in map(_real, originals):
        assert renders_like(tok, original, variant)
        # Beyond the sample chats: tool definitions and tool calls, a date, every generation prompt.
        for kwargs in ({"tools": TOOLS}, {"tools": TOOLS, "date_string": "01 Jan 2025"}, {}):
            for chat in [*SAMPLE_CHATS, TOOL_CHAT]:
                for cut in range(1, len(chat) + 1):
                    for gen in (False, True):
                        assert _outcome(tok, variant, chat[:cut], add_generation_prompt=gen, **kwargs) == \
                            _outcome(tok, original, chat[:cut], add_generation_prompt=gen, **kwargs)


def test_the_assistant_mask_of_a_tool_call_covers_the_call_and_its_end_of_turn(tokenizers: Any) -> None:
    tok = tokenizers("llama3")
    out = tok.apply_chat_template(TOOL_CHAT, chat_template=read_template("llama3_1_training"), tools=TOOLS,
                                  return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m])
    assert trained == '{"name": "add", "parameters": {"a": 2, "b": 3}}<|eot_id|>It is 5.<|eot_id|>'


def test_the_named_llama3_format_renders_like_llama_3_instruct(tokenizers: Any) -> None:
    assert renders_like(tokenizers("llama3"), _real("llama-3.0-instruct"), NAMED_TEMPLATES["llama3"].text)


@pytest.mark.parametrize(("family", "template", "source", "loss"), [
    ("qwen2.5", "qwen2.5-instruct", "ladder:qwen2_5_training", "assistant"),
    ("qwen2.5", "qwen2.5-instruct-2024-09", "ladder:qwen2_5_training", "assistant"),
    ("llama3", "llama-3.0-instruct", "trl", "assistant"),
    ("llama3", "llama-3.1-instruct", "ladder:llama3_1_training", "assistant"),
    ("llama3", "llama-3.2-instruct", "ladder:llama3_2_training", "assistant"),
    ("llama3", "llama-3.3-instruct", "ladder:llama3_1_training", "assistant"),
    ("smollm2", "smollm2-instruct", "ladder:chatml", "assistant"),
    ("gemma3", "gemma-3-it", "trl", "assistant"),
    ("phi3", "phi-3-mini-instruct", "trl", "assistant"),
    ("phi3", "phi-3.5-mini-instruct", "trl", "assistant"),
    ("phi4-mini", "phi-4-mini-instruct", "model:prompt-completion", "completion"),
    ("qwen2.5", "phi-4", "model:prompt-completion", "completion"),
])
def test_each_family_gets_a_verified_template_or_prompt_completion_masking(family: str, template: str, source: str,
                                                                          loss: str, tokenizers: Any) -> None:
    tok = tokenizers(family, template)
    fmt = sft_format(tok)
    assert (fmt.source, fmt.loss) == (source, loss)
    if loss == "assistant":
        assert renders_like(tok, _real(template), fmt.template) and has_generation_markers(fmt.template)
        assert training_chat_template(tok) == fmt.template
    else:
        assert fmt.template == _real(template)  # the model's own, its prompts masked
        with pytest.raises(ConfigError, match="no verified training variant"):
            training_chat_template(tok)
    assert tok.chat_template == _real(template)  # the tokenizer is left as it was


def test_smollm2s_default_system_prompt_is_kept(tokenizers: Any) -> None:
    tok = tokenizers("smollm2", "smollm2-instruct")
    rendered = _render(tok, sft_format(tok).template, [{"role": "user", "content": "Hi"}])
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face")


def test_a_variant_that_renders_differently_is_not_used(tokenizers: Any) -> None:
    tok = tokenizers("qwen2.5")
    smollm2 = _real("smollm2-instruct")
    assert not renders_like(tok, smollm2, read_template("qwen2_5_training"))  # another default system prompt
    assert not renders_like(tok, _real("llama-3.1-instruct"), read_template("llama3_2_training"))  # the date line


def test_mistral_templates_mask_by_prompt_unless_the_chats_make_that_wrong(tokenizers: Any) -> None:
    nemo = tokenizers("mistral", "mistral-nemo-instruct-2407")
    no_system = [[m for m in chat if m["role"] != "system"] for chat in SAMPLE_CHATS[:3]]
    assert prompt_prefix_problem(nemo, _real("mistral-nemo-instruct-2407"), no_system) is None
    assert sft_format(nemo, chats=no_system).loss == "completion"
    # Nemo renders the system prompt in the last user turn only: a training chat loses it.
    problem = prompt_prefix_problem(nemo, _real("mistral-nemo-instruct-2407"), [SAMPLE_CHATS[1]])
    assert problem is not None and "system, user, assistant, user, assistant" in problem
    with pytest.raises(ConfigError, match="assistant_only_loss: false"):
        sft_format(nemo, chats=[SAMPLE_CHATS[1]])
    # v0.1 refuses system prompts: rows with one cannot be rendered at all.
    v01 = tokenizers("mistral", "mistral-7b-instruct-v0.1")
    assert "cannot render" in prompt_prefix_problem(v01, _real("mistral-7b-instruct-v0.1"), [SAMPLE_CHATS[1]])
    assert sft_format(v01).loss == "completion"  # on the sample chats it accepts


def test_whole_conversation_loss_keeps_the_models_template(tokenizers: Any) -> None:
    tok = tokenizers("llama3", "llama-3.2-instruct")
    fmt = sft_format(tok, assistant_only_loss=False)
    assert (fmt.template, fmt.loss, fmt.source) == (_real("llama-3.2-instruct"), "all", "model")


def test_a_model_without_a_template_needs_one_by_name(tokenizers: Any) -> None:
    base = tokenizers("llama3")
    with pytest.raises(ConfigError, match="chatml or llama3"):
        sft_format(base)
    fmt = sft_format(base, " ChatML ")
    assert (fmt.source, fmt.loss, fmt.special_tokens) == ("named:chatml", "assistant", ("<|im_start|>", "<|im_end|>"))
    assert named_template("zephyr") is None and named_template(None) is None


def test_other_stages_use_a_named_template_only_when_its_tokens_exist(tokenizers: Any) -> None:
    with pytest.raises(ConfigError, match="set `chat_template: chatml` on an SFT stage"):
        chat_template_for(tokenizers("llama3"), None, "chatml", where="stage 'dpo'", fix="run SFT first")
    qwen = tokenizers("qwen2.5")
    assert chat_template_for(qwen, None, "chatml", where="stage 'dpo'", fix="") == NAMED_TEMPLATES["chatml"].text


@pytest.mark.parametrize(("family", "template", "stop"), [
    ("qwen2.5", "qwen2.5-instruct", "<|im_end|>"), ("llama3", "llama-3.2-instruct", "<|eot_id|>"),
    ("gemma3", "gemma-3-it", "<end_of_turn>"), ("phi3", "phi-3.5-mini-instruct", "<|end|>"),
    ("phi4-mini", "phi-4-mini-instruct", "<|end|>"), ("mistral", "mistral-nemo-instruct-2407", "</s>"),
])
def test_generation_stops_on_the_familys_end_of_turn_token(family: str, template: str, stop: str,
                                                          tokenizers: Any) -> None:
    tok = tokenizers(family, template)
    assert eos_token_ids(tok, tok.chat_template)[0] == tok.convert_tokens_to_ids(stop)


def test_prompt_completion_rows_train_every_assistant_turn_once() -> None:
    chat = SAMPLE_CHATS[1]
    rows = completion_rows([{"messages": chat}, {"messages": [{"role": "assistant", "content": "x"}]}])
    assert rows == [{"prompt": chat[:2], "completion": [chat[2]]}, {"prompt": chat[:4], "completion": [chat[4]]}]


@pytest.mark.parametrize(("family", "tied"), [("llama3", True), ("mistral", False)])
def test_new_chat_tokens_are_added_and_their_layers_train(family: str, tied: bool, tmp_path: Path) -> None:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.training.templates.tokens import add_special_tokens, fit_embeddings, tokens_to_train, \
        train_token_rows

    path = build_tiny_family_model(tmp_path, family, chat_template=None, hidden_size=16, num_layers=1)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    rows = len(tok)
    fmt = sft_format(tok, "chatml")
    assert add_special_tokens(tok, fmt.special_tokens) == ["<|im_start|>", "<|im_end|>"]
    assert add_special_tokens(tok, fmt.special_tokens) == []  # already there
    assert tok.tokenize("a<|im_end|>b") == ["a", "<|im_end|>", "b"] and "<|im_end|>" in tok.all_special_tokens
    assert fit_embeddings(model, tok) and model.get_output_embeddings().weight.shape[0] == rows + 2
    assert not fit_embeddings(model, tok)
    ids = tokens_to_train(model, tok, fmt.template, ["<|im_start|>", "<|im_end|>"])
    assert ids == [rows, rows + 1]
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    train_token_rows(config, model, ids)
    assert set(config.modules_to_save) == {"embed_tokens", "lm_head"}
    assert config.ensure_weight_tying is tied
    train_token_rows(None, model, ids)  # full fine-tuning trains every row anyway: nothing to change


def test_an_end_of_turn_token_the_model_never_learned_is_trained(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.training.templates.tokens import tokens_to_train

    path = build_tiny_family_model(tmp_path, "llama3", chat_template=None, hidden_size=16, num_layers=1)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    llama3 = NAMED_TEMPLATES["llama3"].text
    assert tokens_to_train(model, tok, llama3, []) == []  # a random model's rows all look alike
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    with torch.no_grad():  # a base model's <|eot_id|>: an output row near zero
        model.get_output_embeddings().weight[eot] = 0.0
    assert tokens_to_train(model, tok, llama3, []) == [eot]
