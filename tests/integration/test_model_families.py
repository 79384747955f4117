"""The model families people bring, on tiny random models carrying their real chat templates.

Each family's template is the real text (``tests/data/chat_templates/``, sources in its
README.md). For each: SFT's collated batch has labels on the assistant's turns and -100
everywhere else (checked token by token against the template's own rendering); and the whole
ladder SFT -> DPO -> GRPO(input=sft) runs, every checkpoint stops on the family's end-of-turn
token and its merge reproduces the adapter. The default run checks the labels of the five
families of the issue (Qwen2.5-Instruct, Llama-3.2-Instruct, SmolLM2-Instruct, Gemma-3-it and a
base model given ``chat_template: chatml``) and climbs the whole ladder with the base model;
the other families and ladders are ``slow`` (a ladder takes ~20 s of CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ladder import DPO, GRPO, SFT, ConfigError, Pipeline
from ladder.checkpoint import Checkpoint
from ladder.registry import rewards
from ladder.rewards import completion_text
from ladder.stage import StageContext
from ladder.testing import build_tiny_family_model

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
FAST = {}

# (case id, tiny family, template file or None for a base model, SFT chat_template, end-of-turn, how it masks)
FAMILIES = [
    ("qwen2.5-instruct", "qwen2.5", "qwen2.5-instruct", None, "<|im_end|>", "ladder:qwen2_5_training"),
    ("llama-3.2-instruct", "llama3", "llama-3.2-instruct", None, "<|eot_id|>", "ladder:llama3_2_training"),
    ("smollm2-instruct", "smollm2", "smollm2-instruct", None, "<|im_end|>", "ladder:chatml"),
    ("gemma-3-it", "gemma3", "gemma-3-it", None, "<end_of_turn>", "trl"),
    # A base Llama 3 (no template, no ChatML tokens) given ChatML: the tokens are added and trained.
    ("llama-3-base+chatml", "llama3", None, "chatml", "<|im_end|>", "named:chatml"),
]
MORE_FAMILIES = [
    ("qwen2.5-instruct-2024-09", "qwen2.5", "qwen2.5-instruct-2024-09", None, "<|im_end|>", "ladder:qwen2_5_training"),
    ("llama-3.0-instruct", "llama3", "llama-3.0-instruct", None, "<|eot_id|>", "trl"),
    ("llama-3.1-instruct", "llama3", "llama-3.1-instruct", None, "<|eot_id|>", "ladder:llama3_1_training"),
    ("llama-3.3-instruct", "llama3", "llama-3.3-instruct", None, "<|eot_id|>", "ladder:llama3_1_training"),
    ("llama-3-base+llama3", "llama3", None, "llama3", "<|eot_id|>", "named:llama3"),
    ("qwen2.5-base+chatml", "qwen2.5", None, "chatml", "<|im_end|>", "named:chatml"),
    ("phi-3.5-mini-instruct", "phi3", "phi-3.5-mini-instruct", None, "<|end|>", "trl"),
    ("phi-4-mini-instruct", "phi4-mini", "phi-4-mini-instruct", None, "<|end|>", "model:prompt-completion"),
    ("phi-4", "qwen2.5", "phi-4", None, "<|im_end|>", "model:prompt-completion"),
    ("mistral-nemo-instruct", "mistral", "mistral-nemo-instruct-2407", None, "</s>", "model:prompt-completion"),
    # An untied output layer (Mistral's): both matrices train whole for the added tokens.
    ("mistral-base+chatml", "mistral", None, "chatml", "<|im_end|>", "named:chatml"),
]
ALL = {case[0]: case for case in FAMILIES + MORE_FAMILIES}
# The families whose template drops or refuses a system prompt train on chats without one.
NO_SYSTEM = {"mistral-nemo-instruct"}
# Phi-3's fused attention projections are named qkv_proj (ladder's default LoRA targets are q_proj, v_proj).
LORA = {"phi3": {"target_modules": ["qkv_proj"]}, "phi4-mini": {"target_modules": ["qkv_proj"]}}

CHATS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
     {"role": "assistant", "content": "5"}, {"role": "user", "content": "And 7 + 8?"},
     {"role": "assistant", "content": "<answer>15</answer>"}],
    [{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hello world"}],
]
PROBLEMS = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 5) for b in range(1, 3)]
SFT_ROWS = [{"messages": [{"role": "user", "content": p["prompt"]},
                          {"role": "assistant", "content": f"<answer>{p['answer']}</answer>"}]} for p in PROBLEMS]
PAIRS = [{"prompt": p["prompt"], "chosen": f"<answer>{p['answer']}</answer>", "rejected": "I do not know."}
         for p in PROBLEMS]


def _chats(case: str) -> list[list[dict[str, str]]]:
    return [[m for m in chat if m["role"] != "system"] for chat in CHATS] if case in NO_SYSTEM else CHATS


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Builds each case's tiny model once (about 0.3 s each)."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("families")

    def get(case: str) -> Path:
        if case not in built:
            _, family, template, *_ = ALL[case]
            text = (TEMPLATES / f"{template}.jinja").read_text(encoding="utf-8") if template else None
            built[case] = build_tiny_family_model(root / case, family, chat_template=text)
        return built[case]

    return get


def _stage_context(tmp: Path) -> StageContext:
    return StageContext(run_dir=tmp, work_dir=tmp / "w", final_dir=tmp / "f", trainer_dir=tmp / "t")


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _turn_spans(tok: Any, template: str, chat: Sequence[dict[str, str]], eot: str,
                turns: Sequence[int]) -> tuple[str, list[tuple[int, int, int]]]:
    """The chat as the *model's own* template renders it, and for each assistant turn in ``turns``
    its span: where it starts (after the prompt rendered with the generation prompt), where its
    end-of-turn token ends, and where the next message starts (what the template writes after the
    end-of-turn token, a newline or EOS, may be trained or not)."""
    def render(msgs: Sequence[dict[str, str]], gen: bool) -> str:
        return tok.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=gen, chat_template=template)

    full = render(chat, False)
    spans = []
    for k in turns:
        prompt = render(chat[:k], True)
        assert full.startswith(prompt), "the prompt must render as a prefix of the chat"
        end_of_turn = full.index(eot, len(prompt) + len(chat[k]["content"].strip())) + len(eot)
        next_start = _common_prefix(full, render(chat[: k + 1], False))
        spans.append((len(prompt), end_of_turn, max(next_start, end_of_turn)))
    return full, spans


def _check_labels(tok: Any, ids: list[int], labels: list[int], full: str, spans: list[tuple[int, int, int]]) -> None:
    """Labels are the ids on every token of each turn's text and end-of-turn token, -100 on every
    token before a turn starts or after the text the template writes after it."""
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == enc["input_ids"], "the trainer's tokens are not the chat as the template renders it"
    for pos, (tid, label, (start, end)) in enumerate(zip(ids, labels, enc["offset_mapping"])):
        must = any(s <= start and end <= e for s, e, _ in spans)
        may = any(s <= start and end <= n for s, _, n in spans)
        if must:
            assert label == tid, f"token {pos} {tok.decode([tid])!r} of an assistant turn is masked"
        elif not may:
            assert label == -100, f"token {pos} {tok.decode([tid])!r} outside the assistant turns is trained"
        else:
            assert label in (tid, -100)
    assert any(label != -100 for label in labels)


def _labels_case(case: str, models: Any, tmp: Path) -> None:
    _, family, template_file, chat_template, eot, how = ALL[case]
    chats = _chats(case)
    settings = {"chat_template": chat_template} if chat_template else {}
    stage = SFT(dataset=[{"messages": c} for c in chats], max_steps=1, lora=LORA.get(family, {}), **settings)
    trainer, facts = stage.build_trainer(Checkpoint.base(models(case)), _stage_context(tmp))
    assert facts["chat_format"]["template"] == how
    tok = facts["tokenizer"]
    # What the loss must cover is defined by the model's own template (the named one for a base model).
    original = facts["template"] if template_file is None else (TEMPLATES / f"{template_file}.jinja").read_text()
    n = len(trainer.train_dataset)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    rows = iter(range(n))
    for chat in chats:
        assistant = [k for k, m in enumerate(chat) if m["role"] == "assistant"]
        # Prompt/completion masking trains one row per assistant turn (the chat up to it).
        groups = [(chat[: k + 1], [k]) for k in assistant] if facts["chat_format"]["loss"] == "completion" \
            else [(chat, assistant)]
        for msgs, turns in groups:
            i = next(rows)
            length = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i][:length].tolist()
            labels = batch["labels"][i][:length].tolist()
            full, spans = _turn_spans(tok, original, msgs, eot, turns)
            _check_labels(tok, ids, labels, full, spans)
    assert next(rows, None) is None
    assert tok.convert_tokens_to_ids(eot) == facts["eos_ids"][0], "generation must stop on the end-of-turn token"


@pytest.mark.parametrize("case", [c[0] for c in FAMILIES] + [pytest.param(c[0], marks=pytest.mark.slow)
                                                             for c in MORE_FAMILIES])
def test_sft_trains_exactly_the_assistant_turns(case: str, models: Any, tmp_path: Path) -> None:
    _labels_case(case, models, tmp_path)


def test_a_template_that_drops_the_system_prompt_is_refused_with_system_rows(models: Any, tmp_path: Path) -> None:
    # Mistral-Nemo's template renders the system prompt in the *last* user message only: a chat
    # rendered for training loses it, so no masking can train what inference will see.
    stage = SFT(dataset=[{"messages": CHATS[0]}], max_steps=1)
    with pytest.raises(ConfigError, match="renders differently alone than in the chat"):
        stage.build_trainer(Checkpoint.base(models("mistral-nemo-instruct")), _stage_context(tmp_path))


def digit_share(completions: Any, **kwargs: Any) -> list[float]:
    """Share of digits in the completion: a reward with spread on a random model."""
    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def _ladder(case: str, models: Any, run_dir: Path, **settings: Any) -> Any:
    _, family, _, chat_template, *_ = ALL[case]
    rewards.register("digit_share", digit_share, replace=True)
    common = {"learning_rate": 5e-3, "save_steps": 0, "lora": LORA.get(family, {}), "trainer_kwargs": FAST,
              **settings}
    sft_settings = {"chat_template": chat_template} if chat_template else {}
    stages = [
        SFT(dataset=SFT_ROWS, max_steps=2, per_device_train_batch_size=4, **sft_settings, **common),
        DPO(dataset=PAIRS, max_steps=1, per_device_train_batch_size=4, heldout_fraction=0.0, **common),
        GRPO(dataset=PROBLEMS, input="sft", rewards={"digit_share": 1.0}, max_steps=1, num_generations=4,
             per_device_train_batch_size=4, max_completion_length=6, **common),
    ]
    return Pipeline(stages, model=models(case), run_dir=run_dir, probes=False).run()


def _check_ladder(case: str, result: Any) -> None:
    eot = ALL[case][4]
    assert result.trained == ("sft", "dpo", "grpo")
    for name in ("sft", "dpo", "grpo"):
        ckpt = result.checkpoints[name]
        model_dir = Path(ckpt.path)
        metrics = json.loads((model_dir.parent / "metrics.json").read_text())
        assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3, name
        assert metrics["train"]["loss_first"] == metrics["train"]["loss_first"]  # logged, not NaN
        gen = json.loads((model_dir / "generation_config.json").read_text())
        stops = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
        tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
        eot_id = next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == eot)
        assert stops[0] == eot_id, f"{name}: generation stops on {stops}, not on {eot} ({eot_id})"
        assert list(ckpt.eos_token_ids)[0] == eot_id


def test_the_ladder_on_a_base_model_given_chatml(models: Any, tmp_path: Path) -> None:
    """The default run's family: a base Llama 3 without a template or ChatML tokens, given
    ``chat_template: chatml``. The tokens are added (embeddings resized, saved with the
    tokenizer) and trained; DPO and GRPO use the SFT checkpoint's template; and the merged model
    equals the base with the adapter loaded from disk."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    case = "llama-3-base+chatml"
    result = _ladder(case, models, tmp_path / "run")
    _check_ladder(case, result)
    sft = result.checkpoints["sft"]
    metrics = json.loads((Path(sft.path).parent / "metrics.json").read_text())
    assert metrics["stage_metrics"]["chat_format"] == {
        "template": "named:chatml", "loss": "assistant", "added_tokens": ["<|im_start|>", "<|im_end|>"]}
    base = AutoModelForCausalLM.from_pretrained(models(case))
    tok = AutoTokenizer.from_pretrained(sft.path)
    assert tok.convert_tokens_to_ids("<|im_end|>") == len(tok) - 1 and "<|im_end|>" in tok.all_special_tokens
    merged = AutoModelForCausalLM.from_pretrained(sft.path)
    assert merged.get_input_embeddings().weight.shape[0] == len(tok) == base.config.vocab_size + 2
    # Under LoRA the embeddings and the output layer (tied here) trained whole, for the new rows.
    adapter = Path(sft.adapter_path)
    from safetensors.torch import load_file

    saved = load_file(str(adapter / "adapter_model.safetensors"))
    for layer in ("embed_tokens", "lm_head"):
        assert any(k.endswith(f"{layer}.modules_to_save.weight") for k in saved), sorted(saved)
    assert json.loads((adapter / "adapter_config.json").read_text())["ensure_weight_tying"] is True
    # Merged logits equal base + adapter logits, the adapter loaded from disk.
    base.resize_token_embeddings(len(tok))
    with_adapter = PeftModel.from_pretrained(base, str(adapter))
    text = tok.apply_chat_template(SFT_ROWS[0]["messages"], tokenize=False)
    inputs = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        want = with_adapter(**inputs).logits
        got = merged(**inputs).logits
    assert (want - got).abs().max().item() < 1e-4


def test_added_chat_tokens_train_and_publish_in_fp32_on_a_bf16_base(
        models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``precision: bf16`` on a CPU with native bf16 (the hardware probe is the boundary) trains
    each LoRA on a bf16 copy of the base. What PEFT trains whole beside it (here the added chat
    tokens' embeddings) is cast to float32 for training, and publication merges into the float32
    input weights, resized for the added tokens."""
    import torch
    from safetensors.torch import load_file

    from ladder.training import models as model_loading

    monkeypatch.setattr(model_loading, "cpu_has_native_bf16", lambda: True)
    case = "llama-3-base+chatml"
    result = _ladder(case, models, tmp_path / "run", precision="bf16")
    _check_ladder(case, result)
    for name in ("sft", "dpo", "grpo"):
        ckpt = result.checkpoints[name]
        metrics = json.loads((Path(ckpt.path).parent / "metrics.json").read_text())
        assert metrics["stage_metrics"]["trained_on_dtype"] == "bfloat16", name
        merged = load_file(str(Path(ckpt.path) / "model.safetensors"))
        assert {t.dtype for t in merged.values()} == {torch.float32}, name
    sft = result.checkpoints["sft"]
    saved = load_file(str(Path(sft.adapter_path) / "adapter_model.safetensors"))
    whole = {k: t.dtype for k, t in saved.items() if "modules_to_save" in k}
    assert whole and set(whole.values()) == {torch.float32}, whole
    # The published SFT model is the float32 base (resized) with the adapter loaded from disk.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sft.path)
    base = AutoModelForCausalLM.from_pretrained(models(case), dtype=torch.float32)
    base.resize_token_embeddings(len(tok))
    with_adapter = PeftModel.from_pretrained(base, str(sft.adapter_path))
    inputs = tok(tok.apply_chat_template(SFT_ROWS[0]["messages"], tokenize=False), return_tensors="pt",
                 add_special_tokens=False)
    with torch.no_grad():
        want = with_adapter(**inputs).logits
        got = AutoModelForCausalLM.from_pretrained(sft.path)(**inputs).logits
    assert (want - got).abs().max().item() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("case", [c[0] for c in FAMILIES if c[0] != "llama-3-base+chatml"]
                         + ["llama-3.1-instruct", "phi-3.5-mini-instruct", "phi-4-mini-instruct", "mistral-nemo-instruct",
                            "mistral-base+chatml"])
def test_the_ladder_on_each_family(case: str, models: Any, tmp_path: Path) -> None:
    _check_ladder(case, _ladder(case, models, tmp_path / "run"))
