"""RLHF pre-flight: which checkpoints go where (reward vs policy), reward-model references,
the defaults of RL against a reward model alone, and the fingerprint of a learned reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import GRPO, RLOO, SFT, DPO, Pipeline, RewardModel, ValidationError
from ladder.stage import StageContext
from ladder.training import rl

SFT_ROWS = [{"instruction": f"Say {i}", "output": str(i)} for i in range(4)]
PAIRS = [{"prompt": f"Say {i}", "chosen": str(i), "rejected": "no"} for i in range(20)]
PROMPTS = [{"prompt": f"Say {i}"} for i in range(8)]


def _problems(tmp_path: Path, stages: list) -> list[str]:
    pipeline = Pipeline(stages, model="unused-model-id", run_dir=tmp_path / "run", probes=False)
    with pytest.raises(ValidationError) as info:
        pipeline.validate()
    assert not (tmp_path / "run").exists()  # nothing was written
    return info.value.problems


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f", trainer_dir=tmp_path / "t")


# ---------------------------------------------------------------------- checkpoint kinds


@pytest.mark.parametrize("policy_stage", [
    GRPO(dataset=PROMPTS, reward_model="rm"),
    RLOO(dataset=PROMPTS, reward_model="rm"),
    DPO(dataset=PAIRS),
    SFT(dataset=SFT_ROWS, name="sft2"),
])
def test_a_reward_checkpoint_where_a_policy_is_expected_names_both_stages(tmp_path: Path, policy_stage) -> None:
    # no input=: the stage would start from the previous stage, the reward model
    (problem,) = _problems(tmp_path, [SFT(dataset=SFT_ROWS), RewardModel(dataset=PAIRS), policy_stage])
    assert f"({policy_stage.name!r})" in problem and "'rm' produces a reward checkpoint" in problem
    assert "needs a policy checkpoint" in problem and "earlier policy stages: base, sft" in problem


def test_a_reward_stage_given_a_reward_checkpoint_names_both_stages(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, [RewardModel(dataset=PAIRS), RewardModel(dataset=PAIRS, name="rm2", input="rm")])
    assert "('rm2') (rm) needs a policy checkpoint" in problem and "'rm' produces a reward checkpoint" in problem


def test_an_explicit_policy_input_after_the_reward_stage_passes(tmp_path: Path) -> None:
    stages = [SFT(dataset=SFT_ROWS), RewardModel(dataset=PAIRS), GRPO(dataset=PROMPTS, reward_model="rm", input="sft"),
              RLOO(dataset=PROMPTS, reward_model="rm", input="sft")]
    Pipeline(stages, model="unused-model-id", run_dir=tmp_path / "run", probes=False).validate()


# ---------------------------------------------------------------------- reward_model references


def test_reward_model_naming_a_policy_stage(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, [SFT(dataset=SFT_ROWS), GRPO(dataset=PROMPTS, reward_model="sft")])
    assert "stage 2 ('grpo')" in problem and "reward_model='sft' names stage 'sft'" in problem
    assert "produces a policy checkpoint, not a reward model" in problem


def test_reward_model_naming_a_later_stage(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, [RLOO(dataset=PROMPTS, reward_model="rm"), RewardModel(dataset=PAIRS, input="base")])
    assert "stage 1 ('rloo')" in problem and "names stage 2 ('rm'), which runs after 'rloo'" in problem


def test_reward_model_naming_nothing_or_itself(tmp_path: Path) -> None:
    problems = _problems(tmp_path, [GRPO(dataset=PROMPTS, reward_model="nope"),
                                    GRPO(dataset=PROMPTS, reward_model="self", name="self", input="base")])
    assert len(problems) == 2
    assert "reward_model='nope' names no stage" in problems[0] and "(./nope)" in problems[0]
    assert "names the stage itself" in problems[1]


def test_reward_model_folder_is_checked(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    reward = tmp_path / "reward"
    reward.mkdir()
    (reward / "config.json").write_text(
        json.dumps({"architectures": ["Qwen2ForSequenceClassification"], "id2label": {"0": "LABEL_0"}})
    )
    (reward / "chat_template.jinja").write_text("{{ messages }}")
    assert rl.reward_folder_problems(reward) == []
    (missing,) = rl.reward_folder_problems(tmp_path / "nowhere")
    assert "no such folder" in missing
    not_reward, no_template = rl.reward_folder_problems(policy)
    assert "is not a reward model" in not_reward and "no chat template" in no_template
    problems = GRPO(dataset=PROMPTS, reward_model=str(policy)).validate(_ctx(tmp_path))
    assert any("is not a reward model" in p for p in problems)
    assert GRPO(dataset=PROMPTS, reward_model=str(reward)).validate(_ctx(tmp_path)) == []


def test_a_bare_name_is_a_stage_and_a_path_is_a_folder() -> None:
    assert not rl.is_path_reference("rm") and rl.is_path_reference("./rm")
    assert rl.reward_model_name("rm") == "rm" and rl.reward_model_name("./rm") == rl.REWARD_MODEL_PATH_NAME


# ---------------------------------------------------------------------- RL on a reward model alone


def test_reward_model_alone_needs_no_answers_and_adds_no_instruction(tmp_path: Path) -> None:
    for cls in (GRPO, RLOO):
        stage = cls(dataset=PROMPTS, reward_model="rm")
        assert stage.config.rewards == {} and stage.config.instruction is None
        assert stage.validate(_ctx(tmp_path)) == []
        rows, _label, problems = rl.prompt_rows(stage.config)
        assert problems == [] and rows[0]["prompt"] == [{"role": "user", "content": "Say 0"}]
    # YAML-style mapping config takes the same defaults
    assert GRPO({"dataset": PROMPTS, "reward_model": "rm"}).config.rewards == {}


def test_prompts_only_are_refused_without_a_reward_model(tmp_path: Path) -> None:
    problems = GRPO(dataset=PROMPTS).validate(_ctx(tmp_path))
    assert any("missing reference answer" in p for p in problems)
    problems = GRPO(dataset=PROMPTS, rewards={}).validate(_ctx(tmp_path))
    assert any("none given and no reward_model" in p for p in problems)


def test_rewards_beside_a_reward_model_still_need_their_columns(tmp_path: Path) -> None:
    stage = GRPO(dataset=PROMPTS, reward_model="rm", rewards={"exact_match": 1.0})
    assert stage.config.instruction is not None  # given rewards: the verifiable defaults stay
    (problem,) = stage.validate(_ctx(tmp_path))
    assert "reward 'exact_match' needs the column 'answer'" in problem


def test_reward_model_name_must_not_clash_with_a_reward(tmp_path: Path) -> None:
    stage = GRPO(dataset=PROMPTS, reward_model="contains", rewards={"contains": 1.0})
    assert any("logged as 'contains'" in p for p in stage.validate(_ctx(tmp_path)))


def test_rloo_shares_the_batch_arithmetic(tmp_path: Path) -> None:
    (problem,) = RLOO(dataset=PROMPTS, reward_model="rm", num_generations=1).validate(_ctx(tmp_path))
    assert "RLOO compares completions" in problem
    assert RLOO(dataset=PROMPTS, reward_model="rm").config.beta == 0.05  # TRL's RLOO default
    assert GRPO(dataset=PROMPTS, reward_model="rm").config.beta > 0


def test_unknown_rloo_trainer_kwargs_are_reported(tmp_path: Path) -> None:
    problems = RLOO(dataset=PROMPTS, reward_model="rm", trainer_kwargs={"loss_typo": 1}).validate(_ctx(tmp_path))
    assert any("unknown trl.RLOOConfig setting 'loss_typo'" in p for p in problems)


# ---------------------------------------------------------------------- fingerprints and metrics


def test_the_reward_model_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    pipeline = Pipeline([GRPO(dataset=PROMPTS, reward_model="rm")], model="m", run_dir=tmp_path, probes=False)
    stage = pipeline.stages[0]
    a = pipeline.fingerprint(stage, "in", {"reward_model": "aaaa"})
    assert a != pipeline.fingerprint(stage, "in", {"reward_model": "bbbb"})
    assert a == pipeline.fingerprint(stage, "in", {"reward_model": "aaaa"})
    plain = Pipeline([GRPO(dataset=[{"prompt": "p", "answer": "1"}] * 4)], model="m", run_dir=tmp_path)
    assert plain.fingerprint(plain.stages[0], "in") == plain.fingerprint(plain.stages[0], "in", {})


def test_reward_hacking_note() -> None:
    base = {"learned_reward_first": 0.1, "learned_reward_last": 0.9, "completion_length_first": 10.0}
    assert rl.reward_hacking_warning({**base, "completion_length_last": 11.0,
                                       "completion_length_change": 0.1}) is None
    note = rl.reward_hacking_warning({**base, "completion_length_last": 30.0, "completion_length_change": 2.0,
                                       "heldout_after": {"accuracy": 0.3}})
    assert note is not None and "rejected answers" in note and "+200%" in note and "beta" in note
    falling = {**base, "learned_reward_last": 0.0, "completion_length_change": 2.0}
    assert rl.reward_hacking_warning(falling) is None  # the reward did not rise
