"""RLHF on the tiny model: SFT -> reward model -> GRPO and RLOO against the learned reward.

The preference is learnable but not given away: chosen and rejected answers have the same
length (four characters) and differ only in content (letters are preferred to digits), and the
strings are random, so a random scalar head is at chance on the held-out pairs while a trained
one separates them. The RL stages then raise the reward model's score of their completions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ladder import GRPO, RLOO, SFT, Pipeline, RewardModel
from ladder.atomic import is_complete

# Activation (gradient) checkpointing, TRL's default, only slows a tiny model on a CPU down.
FAST = {}


def _pairs(start: int, n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(start, start + n):
        letters = "".join(rng.choice("abcdefgh") for _ in range(4))
        digits = "".join(rng.choice("0123456789") for _ in range(4))
        rows.append({"prompt": f"Answer with letters. ({i})", "chosen": letters, "rejected": digits})
    return rows


TRAIN_PAIRS = _pairs(0, 24, seed=0)
HELDOUT_PAIRS = _pairs(100, 20, seed=1)
PROMPTS = [{"prompt": f"Answer with letters. ({200 + i})"} for i in range(16)]  # prompts only: no answers
SFT_ROWS = [{"instruction": p["prompt"], "output": p["chosen"]} for p in TRAIN_PAIRS]
# The random tiny model's logits are nearly flat: a low temperature amplifies what a LoRA can
# change in a few steps, and 8 completions per prompt give each group a usable spread.
RL = dict(
    dataset=PROMPTS,
    reward_model="rm",
    input="sft",
    num_generations=8,
    max_completion_length=8,
    temperature=0.1,
    learning_rate=2e-2,
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    max_steps=10,
    save_steps=0,
    trainer_kwargs=FAST,
)


def _stages() -> list:
    return [
        SFT(dataset=SFT_ROWS, max_steps=2, learning_rate=5e-3, trainer_kwargs=FAST),
        RewardModel(
            dataset=TRAIN_PAIRS,
            eval_dataset=HELDOUT_PAIRS,
            max_steps=30,
            learning_rate=1e-2,
            per_device_train_batch_size=8,
            save_steps=0,
            trainer_kwargs=FAST,
        ),
        GRPO(**RL, heldout_pairs=HELDOUT_PAIRS),
        RLOO(**RL),
    ]


@pytest.fixture(scope="module")
def rlhf_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("runs") / "rlhf"
    return Pipeline(_stages(), model=tiny_model, run_dir=run_dir, probes=False).run()


def _metrics(run, stage_dir: str) -> dict:
    return json.loads((run.run_dir / stage_dir / "metrics.json").read_text())


def _log(run, stage_dir: str) -> list[dict]:
    return [json.loads(line) for line in (run.run_dir / stage_dir / "trainer_log.jsonl").open()]


def _weights(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_reward_model_learns_a_preference_a_random_head_does_not_know(rlhf_run) -> None:
    metrics = _metrics(rlhf_run, "02-rm")
    sm = metrics["stage_metrics"]
    assert sm["heldout_before"]["n"] == len(HELDOUT_PAIRS) and sm["heldout_rows"] == len(HELDOUT_PAIRS)
    assert sm["heldout_before"]["accuracy"] <= 0.6, sm  # the random head is not already right
    assert sm["heldout_after"]["accuracy"] >= 0.9, sm
    assert sm["heldout_after"]["margin"] > sm["heldout_before"]["margin"] + 1.0
    assert metrics["eval"]["rm_accuracy"] == sm["heldout_after"]["accuracy"]
    assert metrics["train"]["loss_last"] < metrics["train"]["loss_first"]
    assert sm["lora_delta_max_abs"] > 0  # the LoRA trained, so the merge check is not vacuous


def test_reward_output_is_a_verified_merged_classifier(rlhf_run) -> None:
    from ladder.evaluate import reward_model_accuracy
    from ladder.training.models import load_model, load_tokenizer

    rm = rlhf_run.checkpoints["rm"]
    assert rm.kind == "reward" and rm.parent is not None and rm.parent.stage == "sft"
    stage_dir = rlhf_run.run_dir / "02-rm"
    assert is_complete(stage_dir) and Path(rm.path) == stage_dir / "model"
    config = json.loads((stage_dir / "model" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["pad_token_id"] is not None
    metrics = _metrics(rlhf_run, "02-rm")
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    # LoRA touched q/v only; the backbone's MLPs are the SFT model's, bit for bit.
    sft, merged = _weights(rlhf_run.checkpoints["sft"].path), _weights(rm.path)
    assert any(not (sft[k] == merged[k]).all() for k in sft if "v_proj" in k)
    assert all((sft[k] == merged[k]).all() for k in sft if "mlp" in k)
    # The published checkpoint is the model that was measured.
    reloaded = reward_model_accuracy(load_model(rm, kind="reward", device="cpu"), load_tokenizer(rm), HELDOUT_PAIRS)
    assert reloaded["accuracy"] == metrics["stage_metrics"]["heldout_after"]["accuracy"]
    assert reloaded["margin"] == pytest.approx(metrics["stage_metrics"]["heldout_after"]["margin"], abs=1e-4)


@pytest.mark.parametrize(("stage_dir", "name"), [("03-grpo", "grpo"), ("04-rloo", "rloo")])
def test_rl_raises_the_learned_reward(rlhf_run, stage_dir: str, name: str) -> None:
    metrics = _metrics(rlhf_run, stage_dir)
    sm = metrics["stage_metrics"]
    assert metrics["kind"] == name and metrics["train"]["steps"] == 10
    assert sm["reward_model"] == "rm" and sm["reward_weights"] == {"rm": 1.0}
    # the mean of rewards/rm/mean over the last steps is above the first steps
    assert sm["learned_reward_last"] > sm["learned_reward_first"] + 0.5, sm
    assert sm["rewards"]["rm"] == {"first": sm["learned_reward_first"], "last": sm["learned_reward_last"]}
    records = [r for r in _log(rlhf_run, stage_dir) if "reward" in r]
    assert [r["step"] for r in records] == list(range(1, 11))
    for key in ("rewards/rm/mean", "kl", "completions/mean_length", "frac_reward_zero_std"):
        assert all(key in r for r in records), key
    assert "kl_last" in sm  # beta > 0 by default: the KL to the input policy is measured
    for key in ("completion_length_first", "completion_length_last", "completion_length_change"):
        assert isinstance(sm[key], float), key


def test_rl_outputs_are_verified_merged_policies_of_the_sft_model(rlhf_run) -> None:
    sft = rlhf_run.checkpoints["sft"]
    for name, stage_dir in (("grpo", "03-grpo"), ("rloo", "04-rloo")):
        ckpt = rlhf_run.checkpoints[name]
        assert ckpt.kind == "policy" and [c.stage for c in ckpt.lineage()] == [name, "sft", "base"]
        assert ckpt.parent is not None and ckpt.parent.path == sft.path
        assert is_complete(rlhf_run.run_dir / stage_dir)
        assert _metrics(rlhf_run, stage_dir)["stage_metrics"]["merge_max_abs_diff"] < 1e-3
        before, after = _weights(sft.path), _weights(ckpt.path)
        assert any(not (before[k] == after[k]).all() for k in before if "v_proj" in k)


def test_heldout_pairs_are_measured_before_and_after(rlhf_run) -> None:
    sm = _metrics(rlhf_run, "03-grpo")["stage_metrics"]
    before, after = sm["heldout_before"], sm["heldout_after"]
    assert sm["heldout_rows"] == before["n"] == after["n"] == len(HELDOUT_PAIRS)
    assert before["accuracy"] == 0.5 and before["margin"] == 0.0  # the input policy against itself
    for block in (before, after):
        assert 0.0 <= block["logp_accuracy"] <= 1.0 and isinstance(block["logp_margin"], float)
    assert "heldout_before" not in _metrics(rlhf_run, "04-rloo")["stage_metrics"]  # none given


def test_a_second_run_reuses_every_stage(rlhf_run, tiny_model: Path) -> None:
    again = Pipeline(_stages(), model=tiny_model, run_dir=rlhf_run.run_dir, probes=False).run()
    assert again.trained == ()
    assert again.checkpoints["grpo"].fingerprint == rlhf_run.checkpoints["grpo"].fingerprint


def test_reward_model_given_as_a_folder(rlhf_run, tiny_model: Path, tmp_path: Path) -> None:
    folder = str(rlhf_run.checkpoints["rm"].path)
    stage = GRPO(**{**RL, "reward_model": folder, "input": None, "max_steps": 1, "num_generations": 2,
                    "per_device_train_batch_size": 2})
    result = Pipeline([stage], model=rlhf_run.checkpoints["sft"].path, run_dir=tmp_path / "folder",
                      probes=False).run()
    sm = json.loads((tmp_path / "folder" / "01-grpo" / "metrics.json").read_text())["stage_metrics"]
    assert sm["reward_weights"] == {"reward_model": 1.0} and sm["reward_model"] == str(Path(folder).resolve())
    assert result.final.kind == "policy"


# ---------------------------------------------------------------------- the example, on the real model


@pytest.mark.slow
def test_rlhf_example_report_shows_the_reward_model_and_learned_reward_beside_dpo(tmp_path: Path) -> None:
    """examples/rlhf.yaml, shortened (a few steps per stage, small evaluations), on the embedded
    SmolLM2-135M-Instruct: one report with the reward model's accuracy, GRPO's learned-reward
    curve and the DPO branch's numbers side by side."""
    import yaml

    from ladder.recipe import pipeline_from_dict
    from ladder.report.metrics import format_value, spec_for
    from tests.unit.test_report import parse

    examples = Path(__file__).resolve().parents[2] / "examples"
    data = yaml.safe_load((examples / "rlhf.yaml").read_text())
    data["run_dir"] = str(tmp_path / "rlhf")
    data["generation"] = {"max_new_tokens": 16, "batch_size": 8}
    data["probes"] = {"replace": True, "items": [{"id": "sum", "prompt": "What is 12 + 30?"}]}
    data["evals"] = {"preference": {"source": data["evals"]["preference"], "limit": 8},
                     "verifiable": {**data["evals"]["verifiable"], "limit": 4}}
    steps = {"sft": 3, "rm": 4, "grpo": 4, "dpo": 3}
    for stage in data["stages"]:
        stage["max_steps"] = steps[stage["stage"]]
        if stage["stage"] == "grpo":
            stage.update(per_device_train_batch_size=8, max_completion_length=16)
    result = pipeline_from_dict(data, base_dir=examples).run()
    assert result.trained == ("sft", "rm", "grpo", "dpo")
    run_dir = Path(data["run_dir"])

    dom = parse((run_dir / "report.html").read_text(encoding="utf-8"))
    tables = dom.find_all("table", **{"class": "metrics"})
    for table in tables:  # one column per checkpoint, the reward model and both branches included
        headers = [th.attrs.get("data-stage") for th in table.find_all("thead")[0].find_all("th")]
        assert headers == [None, "base", "sft", "rm", "grpo", "dpo"]

    def cell(stage: str, path: str) -> Any:
        (found,) = [c for t in tables for c in t.find_all("td", data_stage=stage, data_metric=path)]
        return found

    metrics = {d.name.split("-", 1)[1]: json.loads((d / "metrics.json").read_text())
               for d in run_dir.iterdir() if (d / "metrics.json").is_file()}
    # the reward model's held-out accuracy, as metrics.json has it
    rm_acc = metrics["rm"]["eval"]["rm_accuracy"]
    shown = cell("rm", "eval.rm_accuracy").find_all("span", **{"class": "v"})[0].text
    assert shown == format_value(rm_acc, spec_for("eval.rm_accuracy").unit)
    # one preference-accuracy row across the reward model, GRPO-on-RM and DPO
    for stage in ("rm", "grpo", "dpo"):
        value = metrics[stage]["eval"]["preference"]["accuracy"]
        assert float(cell(stage, "eval.preference.accuracy").attrs["data-value"]) == value
    # the learned reward: its numbers and its curve, beside DPO's curves
    grpo_sm = metrics["grpo"]["stage_metrics"]
    assert float(cell("grpo", "stage_metrics.learned_reward_last").attrs["data-value"]) == grpo_sm[
        "learned_reward_last"]
    assert grpo_sm["reward_weights"] == {"rm": 1.0} and "heldout_after" in grpo_sm and "kl_last" in grpo_sm
    plots: dict[str, set[str]] = {}
    for img in dom.find_all("img", data_stage=True):
        plots.setdefault(img.attrs["data-stage"], set()).add(img.attrs["data-plot"])
    assert plots["grpo"] >= {"reward", "kl", "completion-length"}
    assert plots["dpo"] >= {"loss", "preference-accuracy"}
    assert plots["rm"] >= {"loss"}
    log = [json.loads(line) for line in (run_dir / "03-grpo" / "trainer_log.jsonl").open()]
    assert sum("rewards/rm/mean" in r for r in log) == 4  # the curve's points
