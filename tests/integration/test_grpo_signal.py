"""Where GRPO's learning signal comes from, on the tiny model: the learnability scan drops problems
the input policy always or never solves, dynamic sampling keeps zero-spread groups out of every
step's loss, and ``rollouts.jsonl`` holds every completion with its rewards and advantage."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from ladder import GRPO, Pipeline, ValidationError
from ladder.registry import rewards
from ladder.rewards import completion_text

FAST = {}
# Each problem says how the reward treats it: always solved, never solved, or solved by some
# completions and not others (decided by the completion's text, so samples differ).
PROBLEMS = (
    [{"prompt": f"Always {i}", "answer": "1", "kind": "always"} for i in range(4)]
    + [{"prompt": f"Never {i}", "answer": "1", "kind": "never"} for i in range(4)]
    + [{"prompt": f"Sometimes {i}", "answer": "1", "kind": "sometimes"} for i in range(12)]
)


def by_kind(completions, kind, **kwargs):
    """1.0 for `always` rows, 0.0 for `never` rows, and for `sometimes` rows 1.0 for about half the
    completions (by a hash of the text)."""
    out = []
    for completion, k in zip(completions, kind, strict=True):
        if k == "always":
            out.append(1.0)
        elif k == "never":
            out.append(0.0)
        else:
            out.append(float(hashlib.sha256(completion_text(completion).encode()).digest()[0] % 2))
    return out


def _run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, name: str, **settings):
    """A GRPO run on PROBLEMS with the `by_kind` reward, 4 completions per problem."""
    rewards.register("by_kind", by_kind, replace=True)
    try:
        stage = GRPO(dataset=PROBLEMS, rewards={"by_kind": 1.0}, instruction=None, num_generations=4,
                     max_completion_length=6, temperature=1.0, gradient_accumulation_steps=1, save_steps=0,
                     dynamic_sampling=True, trainer_kwargs=FAST, **settings)
        run_dir = tmp_path_factory.mktemp("runs") / name
        return Pipeline([stage], model=tiny_model, run_dir=run_dir, probes=False).run()
    finally:
        rewards.unregister("by_kind")


@pytest.fixture(scope="module")
def signal_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    return _run(tiny_model, tmp_path_factory, "signal", per_device_train_batch_size=8, max_steps=3,
                learnability_scan=4, max_refills=3)


@pytest.fixture(scope="module")
def refill_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """No scan: 8 of the 20 problems always or never pass, so zero-spread groups come up every step."""
    return _run(tiny_model, tmp_path_factory, "refill", per_device_train_batch_size=16, max_steps=3, max_refills=4)


@pytest.fixture(scope="module")
def anchor_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The scan keeps every always-solved problem as an anchor (scan_keep_solved: 1)."""
    return _run(tiny_model, tmp_path_factory, "anchors", per_device_train_batch_size=8, max_steps=2,
                learnability_scan=4, scan_keep_solved=1.0, max_refills=3)


def _rollouts(run) -> list[dict]:
    path = run.run_dir / "01-grpo" / "rollouts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_scan_drops_problems_always_and_never_solved(signal_run) -> None:
    metrics = json.loads((signal_run.run_dir / "01-grpo" / "metrics.json").read_text())
    scan = metrics["stage_metrics"]["learnability_scan"]
    assert scan["scan_problems"] == 20 and scan["scan_samples"] == 4 and scan["scan_reward"] == "by_kind"
    assert scan["scan_always"] >= 4 and scan["scan_never"] >= 4  # the always/never rows, and maybe a few more
    assert 0 < scan["scan_kept"] <= 12 and metrics["stage_metrics"]["rows"] == scan["scan_kept"]
    assert scan["scan_pass_at_k"] > scan["scan_pass_at_1"] > 0
    trained = {r["prompt"] for r in _rollouts(signal_run)}
    assert trained and all(p.startswith("Sometimes") for p in trained)  # only learnable problems were trained on


def test_the_scan_keeps_always_solved_problems_as_anchors_when_asked(anchor_run) -> None:
    from ladder.report.rollouts import scan_summary

    metrics = json.loads((anchor_run.run_dir / "01-grpo" / "metrics.json").read_text())
    scan = metrics["stage_metrics"]["learnability_scan"]
    assert scan["scan_always"] >= 4 and scan["scan_kept_solved"] == scan["scan_always"]
    assert metrics["stage_metrics"]["rows"] == scan["scan_kept"] == 20 - scan["scan_never"]
    rows = _rollouts(anchor_run)
    assert not any(r["prompt"].startswith("Never") for r in rows)
    anchors = [r for r in rows if r["prompt"].startswith("Always")]
    # Anchors the policy still solves form zero-spread groups: drawn, and kept out of the loss.
    assert anchors and all(not r["in_loss"] for r in anchors)
    summary = scan_summary(metrics)
    assert f"{scan['scan_kept_solved']} of the {scan['scan_always']} always solved, kept as anchors" in summary


@pytest.mark.parametrize("run", ["signal_run", "refill_run"])
def test_dynamic_sampling_keeps_zero_spread_groups_out_of_the_loss(run: str, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(run)
    rows = _rollouts(run)
    groups: dict[tuple[int, int, int], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["step"], row["round"], row["group"])].append(row)
    in_loss = [g for g in groups.values() if g[0]["in_loss"]]
    assert in_loss
    for group in in_loss:
        assert len(group) == 4 and len({r["reward"] for r in group}) > 1, group  # every group in the loss has spread
    for group in groups.values():
        if len({r["reward"] for r in group}) == 1:
            assert not group[0]["in_loss"]
    per_step = defaultdict(int)
    for (step, _round, _group), group in groups.items():
        per_step[step] += group[0]["in_loss"]
    assert sorted(per_step) == [1, 2, 3]
    log = [json.loads(line) for line in (run.run_dir / "01-grpo" / "trainer_log.jsonl").open()]
    logged = [r["dynamic_sampling/zero_spread_in_loss"] for r in log if "dynamic_sampling/zero_spread_in_loss" in r]
    assert len(logged) == 3 and all(v == 0.0 for v in logged)


def test_dropped_groups_are_refilled_with_fresh_problems(refill_run) -> None:
    rows = _rollouts(refill_run)
    dropped = {(r["step"], r["group"]) for r in rows if r["round"] == 0 and not r["in_loss"]}
    refilled = [r for r in rows if r["round"] >= 1 and r["in_loss"]]
    assert dropped, "no zero-spread group came up: the test data should make them certain"
    assert refilled and len(refilled) % 4 == 0
    for step in {s for s, _g in dropped}:  # each step's loss still had its 4 groups
        used = {(r["round"], r["group"]) for r in rows if r["step"] == step and r["in_loss"]}
        assert len(used) == 4, (step, used)
    metrics = json.loads((refill_run.run_dir / "01-grpo" / "metrics.json").read_text())["stage_metrics"]
    assert metrics["dynamic_zero_spread_generated_first"] > 0 and metrics["dynamic_zero_spread_in_loss_max"] == 0.0


def test_rollouts_hold_every_completion_with_its_rewards(signal_run) -> None:
    rows = _rollouts(signal_run)
    first_round = [r for r in rows if r["round"] == 0]
    assert len(first_round) == 3 * 8  # every completion of every step's generation batch
    for row in rows:
        assert set(row) >= {"step", "round", "group", "prompt", "completion", "rewards", "reward", "advantage",
                            "in_loss"}
        assert set(row["rewards"]) == {"by_kind"} and row["reward"] == row["rewards"]["by_kind"]
        assert isinstance(row["completion"], str) and isinstance(row["advantage"], float)


def test_the_report_shows_the_rollouts_best_and_worst_of_each_step_and_the_scan(signal_run) -> None:
    from html.parser import HTMLParser

    rows = _rollouts(signal_run)
    html = (signal_run.run_dir / "report.html").read_text(encoding="utf-8")
    markdown = (signal_run.run_dir / "report.md").read_text(encoding="utf-8")
    steps = sorted({r["step"] for r in rows})
    assert steps and len(steps) == 3

    class Rollouts(HTMLParser):
        """The report's rollout blocks: step -> {which: completion text}."""

        def __init__(self) -> None:
            super().__init__()
            self.found: dict[int, dict[str, str]] = defaultdict(dict)
            self.step: int | None = None
            self.which: str | None = None
            self.in_pre = False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "data-step" in a:
                self.step = int(a["data-step"])
            if "data-which" in a:
                self.which = a["data-which"]
            self.in_pre = tag == "pre" and self.which is not None

        def handle_endtag(self, tag):
            if tag == "pre" and self.in_pre:
                self.in_pre, self.which = False, None

        def handle_data(self, data):
            if self.in_pre and self.step is not None:
                self.found[self.step][self.which] = self.found[self.step].get(self.which, "") + data

    parser = Rollouts()
    parser.feed(html)
    assert sorted(parser.found) == steps
    for step in steps:
        scored = [r for r in rows if r["step"] == step and r["in_loss"]]
        best, worst = max(r["reward"] for r in scored), min(r["reward"] for r in scored)
        shown = parser.found[step]
        assert shown["best"] in {r["completion"] for r in scored if r["reward"] == best}
        if worst < best:
            assert shown["worst"] in {r["completion"] for r in scored if r["reward"] == worst}
        assert f"**Step {step}**" in markdown
    scan = json.loads((signal_run.run_dir / "01-grpo" / "metrics.json").read_text())["stage_metrics"][
        "learnability_scan"]
    sentence = f"Learnability scan: {scan['scan_problems']} problems × 4 samples"
    assert sentence in html and sentence in markdown
    assert f"trained on the {scan['scan_kept']} solved sometimes" in markdown


def test_scan_settings_are_checked_in_preflight(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="1 sample per problem cannot tell"):
        Pipeline([GRPO(dataset=PROBLEMS, rewards={"exact_match": 1.0}, learnability_scan=1)],
                 model="unused", run_dir=tmp_path / "r", probes=False).validate()
    with pytest.raises(ValidationError, match="scan_reward 'nope' is not one of the stage's rewards"):
        Pipeline([GRPO(dataset=PROBLEMS, rewards={"exact_match": 1.0}, learnability_scan=4, scan_reward="nope")],
                 model="unused", run_dir=tmp_path / "r", probes=False).validate()
