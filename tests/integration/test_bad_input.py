"""Bad input, table-driven: every case is a recipe (plus data files) that must be refused.

For each case the test checks, by running it:

- the error the Python API raises (``load_recipe(...).validate()`` or ``.run()``) and that its
  message names the file, row and field (or setting) at fault;
- for data, reward and plugin cases, the specific error underneath (``DataError`` with its
  ``source``/``row``/``field``, ``RewardError``, ``PluginLoadError``, ...), from the public
  function pre-flight calls;
- the CLI (``ladder validate`` / ``ladder run``, in-process through ``ladder.cli.main``, and for
  a good share also as ``python -m ladder.cli`` in a subprocess): exit code 2 for a user error
  (1 for a stage that failed while training), an ``error: ...`` message, no traceback;
- that nothing looking like a finished artifact was written: no COMPLETE marker anywhere under
  the run directory (after ``validate``, no run directory at all).

Exact duplicate rows are the one case that is not refused (docs/reliability.md says why): a
warning names them and the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ladder.cli import main
from ladder.data.loading import load_rows
from ladder.data.preference import normalize_preference_rows
from ladder.data.sft import normalize_sft_rows
from ladder.data.verifiable import normalize_verifiable_rows
from ladder.errors import (
    ConfigError,
    DataError,
    DuplicateComponentError,
    PluginLoadError,
    RecipeError,
    RewardError,
    UnknownComponentError,
    ValidationError,
)
from ladder.recipe import load_recipe
from ladder.registry import rewards, stages
from ladder.rewards import check_reward_on_sample, completion_text

HUB_MODEL = "ladder-tests/not-a-local-model"  # pre-flight never downloads: no tokenizer is loaded
HEADER = "name: bad\nmodel: {model}\nrun_dir: {run_dir}\nprobes: false\n"
FAST = "    trainer_kwargs: {}\n"


# ------------------------------------------------------------------------------------------------
# rewards and plugins the cases use


def boom(completions: list[Any], **kwargs: Any) -> list[float]:
    return [1 / 0 for _ in completions]


def nan_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    return [math.nan for _ in completions]


def short_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    return [0.0]


def slow_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    time.sleep(2.0)  # past the case's 0.3 s timeout; the abandoned thread ends soon after
    return [0.0 for _ in completions]


def needs_tests(completions: list[Any], tests: list[str], **kwargs: Any) -> list[float]:
    return [float(bool(t)) for t in tests]


def nan_in_training(completions: list[Any], trainer_state: Any = None, **kwargs: Any) -> list[float]:
    """Fine in pre-flight (no trainer state); NaN from the second training step on."""
    if trainer_state is not None and trainer_state.global_step >= 1:
        return [math.nan for _ in completions]
    return [float(len(completion_text(c)) % 3) for c in completions]


REWARDS = {f.__name__: f for f in (boom, nan_reward, short_reward, slow_reward, needs_tests, nan_in_training)}


@pytest.fixture(scope="module", autouse=True)
def registered_rewards() -> Iterator[None]:
    for name, fn in REWARDS.items():
        rewards.register(name, fn, replace=True)
    yield
    for name in REWARDS:
        rewards.unregister(name)


def write_plugins(site: Path) -> Path:
    """Two installed-looking plugin distributions: one that fails to import, two claiming one name."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "ladder_broken_plugin.py").write_text("raise ImportError('needs the package frobnicate')\n")
    (site / "ladder_twin_a.py").write_text("from ladder.stages.sft import SFT as Stage\n")
    (site / "ladder_twin_b.py").write_text("from ladder.stages.sft import SFT as Stage\n")
    for dist, entry in (
        ("ladder_broken_plugin", "broken = ladder_broken_plugin:Stage"),
        ("ladder_twin_a", "twin = ladder_twin_a:Stage"),
        ("ladder_twin_b", "twin = ladder_twin_b:Stage"),
    ):
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[ladder.stages]\n{entry}\n")
    return site


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plugins(tmp_path_factory.mktemp("site"))


@pytest.fixture
def installed_plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(plugin_site))
    stages.refresh()
    yield plugin_site
    monkeypatch.undo()
    stages.refresh()


# ------------------------------------------------------------------------------------------------
# the specific error underneath, from the public functions pre-flight calls


def data_error(kind: str, file: str, row: int | None, field_name: str | None) -> Callable[[Path], None]:
    """The first DataError of ``file`` as loaded and normalised for ``kind``."""
    normalise = {"sft": normalize_sft_rows, "preference": normalize_preference_rows,
                 "verifiable": normalize_verifiable_rows}[kind]

    def check(root: Path) -> None:
        try:
            problems = normalise(*load_rows(root / file))[1]
            error: DataError | None = problems[0] if problems else None
        except DataError as exc:
            error = exc
        assert isinstance(error, DataError), error
        assert error.source is not None and error.source.endswith(file)
        assert (error.row, error.field) == (row, field_name), (error.row, error.field, str(error))

    return check


def raises(error: type[Exception], call: Callable[[Path], Any]) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        with pytest.raises(error):
            call(root)

    return check


def reward_error(name: str) -> Callable[[Path], None]:
    def call(root: Path) -> None:
        rows = normalize_verifiable_rows(*load_rows(root / "problems.jsonl"))[0]
        check_reward_on_sample(REWARDS[name], name, rows[:4], timeout_s=0.3)

    return raises(RewardError, call)


# ------------------------------------------------------------------------------------------------
# the cases


@dataclass(frozen=True)
class Case:
    id: str
    recipe: str | None  # YAML after HEADER (or all of it with raw=True); None: the file is missing
    says: tuple[str, ...]  # fragments the message must hold (file, row, field, setting)
    error: type[Exception] | None = ValidationError  # what the Python API raises
    files: dict[str, str | bytes] = field(default_factory=dict)
    command: str = "validate"
    args: tuple[str, ...] = ()
    exit: int = 2
    raw: bool = False
    local_model: bool = False  # the tiny model (lengths are measured, runs can train)
    cause: Callable[[Path], None] | None = None
    subprocess: bool = False  # also run as `python -m ladder.cli`
    plugins: bool = False


def jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD_SFT = [{"instruction": f"What is {i} + {i}?", "output": f"{2 * i}"} for i in range(4)]
SFT = "stages:\n  - stage: sft\n    dataset: data.jsonl\n    max_steps: 1\n"
PAIR = {"prompt": "Hi there", "chosen": "Hello! How can I help?", "rejected": "Go away."}
DPO = "stages:\n  - stage: dpo\n    dataset: pairs.jsonl\n    max_steps: 1\n    heldout_fraction: 0\n"
PROBLEMS = jsonl(*[{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(4)])
LONG = "word " * 400


def grpo(reward: str, extra: str = "") -> str:
    return (
        "stages:\n  - stage: grpo\n    dataset: problems.jsonl\n    rewards: {" + reward + ": 1.0}\n"
        "    num_generations: 2\n    per_device_train_batch_size: 2\n    gradient_accumulation_steps: 1\n"
        "    max_steps: 1\n    reward_timeout_s: 0.3\n" + extra
    )


CASES = [
    # the recipe itself
    Case("yaml_syntax", "name: bad\nstages: [\n  - stage: sft\n", ("invalid YAML", "line"), RecipeError, raw=True,
         subprocess=True),
    Case("yaml_not_a_mapping", "- stage: sft\n", ("must be a YAML mapping",), RecipeError, raw=True,
         subprocess=True),
    Case("recipe_missing", None, ("cannot read the recipe",), RecipeError, subprocess=True),
    Case("unknown_top_level_key", "stagez: []\n" + SFT, ("unknown key(s) 'stagez'", "known keys"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("unknown_stage_setting", SFT + "    learning_rat: 0.1\n", ("stages[1]", "unknown setting 'learning_rat'"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("wrong_type_int_setting", SFT.replace("max_steps: 1", "max_steps: ten"),
         ("stages[1]", "setting 'max_steps' must be int", "'ten'"), files={"data.jsonl": jsonl(*GOOD_SFT)},
         subprocess=True),
    Case("wrong_type_float_setting", SFT + "    learning_rate: fast\n", ("setting 'learning_rate'", "'fast'"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("wrong_type_seed", "seed: abc\n" + SFT, ("`seed:` must be an integer",),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("no_stages", "stages: []\n", ("`stages:` must be a non-empty list",), subprocess=True),
    Case("unknown_stage", "stages:\n  - stage: sftt\n    dataset: data.jsonl\n", ("unknown stage 'sftt'", "sft"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True,
         cause=raises(UnknownComponentError, lambda _root: stages.get("sftt"))),
    Case("stage_name_traversal", SFT + "    name: ../escape\n", ("invalid stage name '../escape'",),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("stage_name_absolute", SFT + "    name: /tmp/escape\n", ("invalid stage name '/tmp/escape'",),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("run_name_traversal", "name: ../../escape\nmodel: " + HUB_MODEL + "\nprobes: false\n" + SFT,
         ("invalid run name '../../escape'",), files={"data.jsonl": jsonl(*GOOD_SFT)}, raw=True, subprocess=True),
    Case("duplicate_stage_names", SFT + "  - stage: sft\n    dataset: data.jsonl\n", ("'sft' is used twice",),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("input_not_an_earlier_stage", SFT + "    input: later\n", ("input='later' is not an earlier stage",),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("sft_unknown_trainer_kwargs", SFT + "    trainer_kwargs: {lerning_rate: 0.1}\n",
         ("stage 'sft'", "unknown trl.SFTConfig setting 'lerning_rate'"), files={"data.jsonl": jsonl(*GOOD_SFT)},
         subprocess=True),
    Case("max_steps_zero", SFT.replace("max_steps: 1", "max_steps: 0"),
         ("stages[1]", "'max_steps' must be a positive number of steps, or -1"), files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("chat_template_file_missing", SFT + "    chat_template: templates/chatml.jinja\n",
         ("setting 'chat_template'", "'templates/chatml.jinja' names no file"), files={"data.jsonl": jsonl(*GOOD_SFT)},
         subprocess=True),
    Case("bad_overlength_policy", SFT + "    overlength: squash\n", ("'overlength' must be in", "'squash'"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("bad_executor", "executor: cloud\n" + SFT, ("`executor:`", "'cloud'"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("duplicate_yaml_key", SFT + "    max_steps: 2\n",
         ("duplicate key 'max_steps' at line 9 (first at line 8)", "keep only the last value"), RecipeError,
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("stage_name_like_a_temp_dir", SFT + "    name: sft.tmp-v2\n",
         ("stage 1 ('sft.tmp-v2')", "invalid stage name 'sft.tmp-v2'", "'.tmp-' marks the temp directories"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("run_name_like_a_temp_dir", "name: nightly.tmp-1\nmodel: " + HUB_MODEL + "\nprobes: false\n" + SFT,
         ("invalid run name 'nightly.tmp-1'", "'.tmp-' marks the temp directories"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, raw=True),
    Case("model_path_missing", "name: bad\nmodel: ./models/missing\nrun_dir: {run_dir}\nprobes: false\n" + SFT,
         ("`model:` './models/missing' names no folder", "case/models/missing)", "or a hub id"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, raw=True, subprocess=True),
    Case("model_path_is_a_file", "name: bad\nmodel: ./model.safetensors\nrun_dir: {run_dir}\nprobes: false\n" + SFT,
         ("`model:` './model.safetensors' is a file, not a model folder",),
         files={"data.jsonl": jsonl(*GOOD_SFT), "model.safetensors": "weights"}, raw=True),
    Case("unknown_option", "options: {trust_remote_cod: true}\n" + SFT,
         ("options: unknown option 'trust_remote_cod'", "known options: trust_remote_code"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("option_wrong_type", "options: {trust_remote_code: 'yes'}\n" + SFT,
         ("options: 'trust_remote_code' must be true or false, got str 'yes'",), files={"data.jsonl": jsonl(*GOOD_SFT)}),
    Case("seed_yes", "seed: yes\n" + SFT, ("`seed:` must be an integer, got bool True", "reads yes/no"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, subprocess=True),
    Case("run_dir_is_a_file", SFT, ("`run_dir:`", "case/run' is a file, not a folder"),
         files={"data.jsonl": jsonl(*GOOD_SFT), "run": "not a folder\n"}, subprocess=True),
    # SFT data
    Case("data_file_missing", SFT, ("data.jsonl", "no such file"), subprocess=True),
    Case("data_malformed_json", SFT, ("data.jsonl", "row 1", "invalid JSON"),
         files={"data.jsonl": jsonl(GOOD_SFT[0], '{"instruction": "oops",', GOOD_SFT[1])}, subprocess=True,
         cause=data_error("sft", "data.jsonl", 1, None)),
    Case("data_missing_column", SFT, ("data.jsonl", "row 2", "field 'output'", "missing field"),
         files={"data.jsonl": jsonl(*GOOD_SFT[:2], {"instruction": "No answer?"})}, subprocess=True,
         cause=data_error("sft", "data.jsonl", 2, "output")),
    Case("data_wrong_type", SFT, ("data.jsonl", "row 0", "field 'output'", "expected a string"),
         files={"data.jsonl": jsonl({"instruction": "Two?", "output": 2}, *GOOD_SFT)}, subprocess=True,
         cause=data_error("sft", "data.jsonl", 0, "output")),
    Case("data_empty_row", SFT, ("data.jsonl", "row 1", "empty row"),
         files={"data.jsonl": jsonl(GOOD_SFT[0], {}, GOOD_SFT[1])}, subprocess=True,
         cause=data_error("sft", "data.jsonl", 1, None)),
    Case("data_empty_file", SFT, ("data.jsonl", "the dataset is empty"), files={"data.jsonl": ""}, subprocess=True,
         cause=data_error("sft", "data.jsonl", None, None)),
    Case("data_unknown_shape", SFT, ("data.jsonl", "row 0", "unrecognised row shape"),
         files={"data.jsonl": jsonl({"text": "plain text"})}, cause=data_error("sft", "data.jsonl", 0, None)),
    Case("data_unknown_role", SFT, ("row 0", "field 'messages[0].role'", "unknown role 'robot'"),
         files={"data.jsonl": jsonl({"messages": [{"role": "robot", "content": "beep"}]})},
         cause=data_error("sft", "data.jsonl", 0, "messages[0].role")),
    Case("data_no_assistant_turn", SFT, ("row 0", "field 'messages'", "no assistant turn"),
         files={"data.jsonl": jsonl({"messages": [{"role": "user", "content": "Hi"}]})},
         cause=data_error("sft", "data.jsonl", 0, "messages")),
    Case("data_not_utf8", SFT, ("data.jsonl", "row 1", "not UTF-8 text: byte 0xff at line 2", "Save the file as UTF-8"),
         files={"data.jsonl": jsonl(GOOD_SFT[0]).encode() + b"\xff\xfe\x00\x01binary\n"}, subprocess=True,
         cause=data_error("sft", "data.jsonl", 1, None)),
    Case("data_path_is_a_folder", SFT.replace("data.jsonl", "data"),
         ("case/data: is a folder, not a dataset file", "give a .json/.jsonl/.parquet/.csv file inside it"),
         files={"data/part-0.jsonl": jsonl(*GOOD_SFT)}, subprocess=True, cause=data_error("sft", "data", None, None)),
    Case("data_unsupported_file_type", SFT.replace("data.jsonl", "data.txt"), ("data.txt", "unsupported file type"),
         files={"data.txt": "hello\n"}, subprocess=True, cause=data_error("sft", "data.txt", None, None)),
    Case("data_duplicate_rows_warn", SFT, ("data.jsonl", "2 exact duplicate rows", "row 2 = row 0", "row 3 = row 0"),
         error=None, exit=0, files={"data.jsonl": jsonl(GOOD_SFT[0], GOOD_SFT[1], GOOD_SFT[0], GOOD_SFT[0])},
         subprocess=True),
    # preference pairs
    Case("pairs_identical", DPO, ("pairs.jsonl", "row 1", "field 'chosen'", "identical chosen and rejected"),
         files={"pairs.jsonl": jsonl(PAIR, {**PAIR, "rejected": PAIR["chosen"]})},
         cause=data_error("preference", "pairs.jsonl", 1, "chosen")),
    Case("pairs_missing_rejected", DPO, ("pairs.jsonl", "row 0", "field 'rejected'", "missing field"),
         files={"pairs.jsonl": jsonl({"prompt": "Hi", "chosen": "Hello"}, PAIR)},
         cause=data_error("preference", "pairs.jsonl", 0, "rejected")),
    # lengths, measured with the (local) base model's tokenizer
    Case("sft_row_too_long", SFT + "    max_length: 64\n", ("data.jsonl", "row 1", "longer than max_length 64"),
         files={"data.jsonl": jsonl(GOOD_SFT[0], {"instruction": LONG, "output": "x"}, GOOD_SFT[1])},
         local_model=True),
    Case("sft_drop_leaves_nothing", SFT + "    max_length: 64\n    overlength: drop\n",
         ("data.jsonl", "every row is longer than max_length 64", "leaves nothing to train on"),
         files={"data.jsonl": jsonl({"instruction": LONG, "output": "x"})}, local_model=True),
    Case("dpo_pair_too_long", DPO + "    max_length: 64\n", ("pairs.jsonl", "row 0", "1 pair is longer than max_length"),
         files={"pairs.jsonl": jsonl({**PAIR, "chosen": LONG}, PAIR)}, local_model=True),
    Case("grpo_prompt_too_long", grpo("nan_in_training") + "    max_prompt_length: 48\n",
         ("problems.jsonl", "row 4", "1 prompt is longer than max_prompt_length 48"),
         files={"problems.jsonl": PROBLEMS + jsonl({"question": LONG, "answer": "#### 1"})}, local_model=True),
    # rewards
    Case("reward_raises", grpo("boom"), ("reward 'boom' raised ZeroDivisionError", "sample 0"),
         files={"problems.jsonl": PROBLEMS}, cause=reward_error("boom")),
    Case("reward_nan", grpo("nan_reward"), ("reward 'nan_reward' returned nan", "must be finite"),
         files={"problems.jsonl": PROBLEMS}, cause=reward_error("nan_reward")),
    Case("reward_wrong_length", grpo("short_reward"), ("reward 'short_reward' returned 1 rewards for 4 completions",),
         files={"problems.jsonl": PROBLEMS}, cause=reward_error("short_reward")),
    Case("reward_hangs", grpo("slow_reward"), ("reward 'slow_reward' did not return within 0.3 s",),
         files={"problems.jsonl": PROBLEMS}, cause=reward_error("slow_reward")),
    Case("reward_unknown", grpo("exact_matc"), ("unknown reward 'exact_matc'", "exact_match"),
         files={"problems.jsonl": PROBLEMS}),
    Case("reward_missing_column", grpo("needs_tests"), ("reward 'needs_tests' needs the column 'tests'",),
         files={"problems.jsonl": PROBLEMS}),
    # plugins
    Case("plugin_fails_to_import", "stages:\n  - stage: broken\n    dataset: data.jsonl\n",
         ("stage 'broken' from package ladder-broken-plugin", "failed to import", "frobnicate"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, plugins=True, subprocess=True,
         cause=raises(PluginLoadError, lambda _root: stages.get("broken"))),
    Case("plugins_claim_one_name", "stages:\n  - stage: twin\n    dataset: data.jsonl\n",
         ("'twin' is claimed by several packages", "ladder-twin-a", "ladder-twin-b"),
         files={"data.jsonl": jsonl(*GOOD_SFT)}, plugins=True, subprocess=True,
         cause=raises(DuplicateComponentError, lambda _root: stages.get("twin"))),
    # `ladder run`: refused before anything is written, or failed while training
    Case("run_row_too_long", SFT + "    max_length: 64\n", ("data.jsonl", "row 1", "longer than max_length 64"),
         command="run", files={"data.jsonl": jsonl(GOOD_SFT[0], {"instruction": LONG, "output": "x"})},
         local_model=True),
    Case("run_from_unknown_stage", SFT, ("--from 'nosuch': no such stage",), ConfigError, command="run",
         args=("--from", "nosuch"), files={"data.jsonl": jsonl(*GOOD_SFT)}, local_model=True),
    Case("run_reward_fails_in_training",
         grpo("nan_in_training").replace("max_steps: 1", "max_steps: 2") + "    max_completion_length: 4\n" + FAST,
         ("reward 'nan_in_training' returned nan", "must be finite"), RewardError, command="run", exit=1,
         files={"problems.jsonl": PROBLEMS}, local_model=True),
]


def write_case(case: Case, root: Path, tiny_model: Path) -> tuple[Path, Path]:
    """The case's files under ``root``; returns ``(recipe path, run dir)``."""
    run_dir = root / "run"
    recipe = root / "recipe.yaml"
    for name, content in case.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            (root / name).write_text(content)
    if case.recipe is not None:
        text = case.recipe if case.raw else HEADER + case.recipe
        model = tiny_model if case.local_model else HUB_MODEL
        recipe.write_text(text.replace("{model}", str(model)).replace("{run_dir}", str(run_dir)))
    return recipe, run_dir


def api(case: Case, recipe: Path) -> None:
    pipeline = load_recipe(recipe)
    if case.command == "validate":
        pipeline.validate()
    else:
        from_stage = case.args[1] if case.args[:1] == ("--from",) else None
        pipeline.run(from_stage=from_stage)


def assert_nothing_published(case: Case, root: Path, run_dir: Path) -> None:
    assert not list(root.rglob("COMPLETE")), "something looks finished"
    assert not any((up / "escape").exists() for up in root.parents[:3])  # nothing escaped the case's folder
    if case.command == "validate":
        assert not run_dir.is_dir(), "validate wrote a run directory"


def assert_cli_output(case: Case, code: int, err: str) -> None:
    assert code == case.exit, err
    assert "Traceback" not in err
    if case.exit:
        assert err.startswith("error: "), err
        message = err.splitlines()[0] if case.exit == 1 else err
        for fragment in case.says:
            assert fragment in message, (fragment, err)
        if case.exit == 1:  # a stage failed while running: one line, then the --debug hint
            assert err.splitlines()[1:] == ["(run with --debug for the full traceback)"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(case: Case, tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
                              caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
                              request: pytest.FixtureRequest) -> None:
    if case.plugins:
        request.getfixturevalue("installed_plugins")
    monkeypatch.chdir(tmp_path)
    for name in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "TQDM_DISABLE"):
        monkeypatch.setenv(name, os.environ.get(name, "error"))
    root = tmp_path / "case"
    root.mkdir()
    recipe, run_dir = write_case(case, root, tiny_model)

    # The Python API: the error and where it points.
    if case.error is None:
        api(case, recipe)
        assert all(fragment in caplog.text for fragment in case.says), caplog.text
    else:
        with pytest.raises(case.error) as info:
            api(case, recipe)
        for fragment in case.says:
            assert fragment in str(info.value), (fragment, str(info.value))
    if case.cause is not None:
        case.cause(root)
    assert_nothing_published(case, root, run_dir)

    # The CLI, in this process.
    capsys.readouterr()
    code = main([case.command, str(recipe), *case.args])
    assert_cli_output(case, code, capsys.readouterr().err)
    assert_nothing_published(case, root, run_dir)

    if case.id == "run_reward_fails_in_training":
        # The failed stage's trainer log is kept beside its resumable state.
        kept = list((run_dir / ".trainer").glob("grpo-*/trainer_log.jsonl"))
        assert len(kept) == 1
        assert [json.loads(line)["step"] for line in kept[0].read_text().splitlines()] == [1]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "failed" and manifest["stages"][0]["status"] == "failed"
        from ladder.report import load_run

        view = load_run(run_dir).stage("grpo")  # the report draws the failed stage's curve from it
        assert view.failed and view.partial_log and view.log_source == kept[0]
        assert [r["step"] for r in view.log] == [1]


SUBPROCESS_CASES = [c for c in CASES if c.subprocess]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.id for c in SUBPROCESS_CASES])
def test_bad_input_through_the_cli_process(case: Case, tmp_path: Path, tiny_model: Path, plugin_site: Path) -> None:
    root = tmp_path / "case"
    root.mkdir()
    recipe, run_dir = write_case(case, root, tiny_model)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site) if case.plugins else "",
                                                                      os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run([sys.executable, "-m", "ladder.cli", case.command, str(recipe), *case.args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    if case.exit:
        assert_cli_output(case, proc.returncode, proc.stderr)
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("OK: ")
        for fragment in case.says:  # the warning, on stderr
            assert fragment in proc.stderr, (fragment, proc.stderr)
    assert_nothing_published(case, root, run_dir)


def test_the_table_covers_what_it_promises() -> None:
    assert len(CASES) >= 30
    assert len(SUBPROCESS_CASES) >= 12
    assert len({c.id for c in CASES}) == len(CASES)
