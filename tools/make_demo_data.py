"""The demo's datasets, written by this project: small, deterministic, verifiable.

Everything here is either hand-written below or generated from hand-written templates with a
fixed seed, so ``ladder demo`` needs no download and every row can be checked by a program.
The datasets are sized for SmolLM2-135M-Instruct on two CPU cores: short prompts and answers
(well under 100 tokens) that a few dozen training steps can move.

This generator is a development tool, not part of the installed package: ``ladder demo`` reads
the JSONL files it wrote, which ship under ``src/ladder/demo/data/``.

Files (:func:`data_file` gives their paths):

======================  ====================================================================
``sft_train.jsonl``     ``messages`` (user, assistant): one-step arithmetic word problems
                        answered ``"3 + 4 = 7. <answer>7</answer>"``, a minority of two-step
                        ones worked a step at a time (``"4 * 3 = 12. 12 - 7 = 5. <answer>5
                        </answer>"``), plus short general instructions with concise answers.
``sft_eval.jsonl``      held-out one-step problems as ``prompt`` + ``answer`` (+
                        ``expression``): the tag-format rate and exact match after SFT.
``dpo_train.jsonl``     ``prompt``, ``chosen``, ``rejected``: a concise answer (one- or
                        two-step problems, general questions) over a rambling, repetitive one;
                        a clean refusal over compliance with a harmful request.
``dpo_eval.jsonl``      held-out pairs of the same kinds, on prompts seen in no training file.
``grpo_train.jsonl``    ``prompt`` + ``answer`` (+ ``expression``): two-step problems
                        (``a * b + c``, ``c + a * b``, ``a * b - c``, small numbers): SFT
                        shows a few of them worked step by step; GRPO rewards getting them right.
                        Among the first 64, 12 one-step problems and 24 asked without the
                        tags (the demo's GRPO stage sets ``instruction: null``).
``grpo_eval.jsonl``     held-out two-step problems for exact match.
======================  ====================================================================

Arithmetic prompts end with :data:`ANSWER_INSTRUCTION`, the instruction ladder's verifiable
loader adds by default, so SFT teaches the exact format GRPO and the evaluations ask for; only
GRPO's 24 untagged problems leave it out.
Every held-out prompt is absent from every training file.

Regenerate the shipped files (byte-identical) with::

    python tools/make_demo_data.py --out src/ladder/demo/data
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ladder.atomic import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_text import BENIGN, EXPLANATIONS, FACTS, FORMAT_TASKS, HARMFUL, IDENTITY  # noqa: E402

__all__ = [
    "SEED",
    "ANSWER_INSTRUCTION",
    "DATA_DIR",
    "FILES",
    "data_file",
    "load_split",
    "sft_train_rows",
    "sft_eval_rows",
    "dpo_train_rows",
    "dpo_eval_rows",
    "grpo_train_rows",
    "grpo_eval_rows",
    "build_all",
    "write_all",
    "main",
]

logger = logging.getLogger(__name__)

SEED = 20240611
# Same text as ladder.data.verifiable.DEFAULT_INSTRUCTION (a test keeps them equal).
ANSWER_INSTRUCTION = "Put the final answer in <answer></answer> tags."
DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "ladder" / "demo" / "data"

Row = dict[str, Any]

# How many rows of each kind; held-out sets are carved out first.
_N_SFT_ARITH = 64
_N_SFT_EVAL = 40
# DPO's arithmetic pairs (of each kind, _N_DPO_ARITH and _N_DPO_TWO_STEP): enough to keep the worked
# format, few enough that refusals and concision get most of DPO's steps.
_N_DPO_ARITH = 12
_N_DPO_EVAL_ARITH = 10
_N_GRPO_TRAIN = 300
# GRPO's first rows (the demo scans and trains on its first 64, `scan_limit`) mix in one-step
# problems, and problems asked without the answer tags (the demo's GRPO stage sets `instruction:
# null`, so a prompt asks for tags only where its text does): with tagged two-step problems only,
# GRPO rewards "take another step" and the model carries it over to questions one step answers,
# asked without tags (the arithmetic suite's regression, docs/benchmarks.md).
_N_GRPO_ONE_STEP, _N_GRPO_UNTAGGED_TWO_STEP, _GRPO_MIXED = 12, 12, 64
_N_SFT_TWO_STEP = 40
_N_DPO_TWO_STEP = 12
_N_GRPO_EVAL = 50
# Hand-written text held out for DPO's preference evaluation (the last N of each list).
_EVAL_FACTS, _EVAL_EXPLANATIONS, _EVAL_HARMFUL, _EVAL_BENIGN = 10, 4, 8, 4
# SFT answers a few harmless look-alikes and imitates no refusal; DPO's pairs are where refusals
# are taught. Imitating refusals, 8 of them or 56, taught the 135M demo model to refuse whatever
# sounds dangerous (over-refusal 44-75% of the safety suite's look-alikes), and DPO could not take
# the over-refusal back without the refusals (docs/benchmarks.md, "Teaching refusals").
_SFT_HARMFUL, _SFT_BENIGN = 0, 8


# --------------------------------------------------------------------------- randomness


class _Rng:
    """Seeded choices built only on ``random.Random.random()``.

    Python guarantees ``random()`` yields the same sequence for the same seed across
    versions; ``randint``/``choice``/``shuffle`` carry no such promise, and the shipped files
    must regenerate byte for byte on any supported Python.
    """

    def __init__(self, label: str) -> None:
        self._random = random.Random(f"ladder-demo-{SEED}-{label}")

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        return low + min(int(self._random.random() * (high - low + 1)), high - low)

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def shuffled(self, items: Sequence[Any]) -> list[Any]:
        keys = [self._random.random() for _ in items]
        return [items[i] for i in sorted(range(len(items)), key=lambda i: (keys[i], i))]

    def chance(self, p: float) -> bool:
        return self._random.random() < p


# --------------------------------------------------------------------------- vocabulary

_NAMES = [
    "Tom", "Ana", "Ben", "Mia", "Sam", "Lena", "Omar", "Yuki", "Ravi", "Zoe",
    "Leo", "Nora", "Ivan", "Sara", "Kofi", "Emma", "Jon", "Lucy", "Amir", "Ella",
]  # fmt: skip
_THINGS = [
    "marbles", "stickers", "pencils", "books", "cards", "shells", "stamps", "coins",
    "buttons", "crayons", "balloons", "stones",
]  # fmt: skip
_FOODS = ["apples", "cookies", "grapes", "plums", "muffins", "carrots", "cherries", "pears"]
_CONTAINERS = ["bags", "boxes", "jars", "baskets", "packs"]


# --------------------------------------------------------------------------- arithmetic


def _one_step(rng: _Rng) -> tuple[str, str, int]:
    """A one-step problem: (text, expression, result)."""
    kind = rng.integer(0, 9)
    name, things, foods, box = rng.pick(_NAMES), rng.pick(_THINGS), rng.pick(_FOODS), rng.pick(_CONTAINERS)
    if kind in (0, 1):
        a, b = rng.integer(2, 30), rng.integer(2, 30)
        text = (
            f"{name} has {a} {things} and buys {b} more. How many {things} does {name} have now?"
            if kind == 0
            else f"There are {a} {foods} on the table and {name} puts {b} more there. "
            f"How many {foods} are on the table?"
        )
        return text, f"{a} + {b}", a + b
    if kind in (2, 3):
        a = rng.integer(5, 40)
        b = rng.integer(1, a - 1)
        text = (
            f"{name} had {a} {things} and gave {b} to a friend. How many {things} does {name} have left?"
            if kind == 2
            else f"A basket holds {a} {foods}. {name} eats {b} of them. How many {foods} are left?"
        )
        return text, f"{a} - {b}", a - b
    if kind in (4, 5):
        a, b = rng.integer(2, 9), rng.integer(2, 9)
        text = (
            f"There are {a} {box} with {b} {things} in each. How many {things} are there in total?"
            if kind == 4
            else f"{name} plants {a} rows of {b} flowers. How many flowers does {name} plant?"
        )
        return text, f"{a} * {b}", a * b
    if kind == 6:
        b, q = rng.integer(2, 9), rng.integer(2, 9)
        a = b * q
        text = f"{name} shares {a} {foods} equally among {b} friends. How many {foods} does each friend get?"
        return text, f"{a} / {b}", q
    # Bare expressions: the same skill without the story.
    op = rng.pick(["+", "-", "*", "/"])
    if op == "+":
        a, b = rng.integer(2, 50), rng.integer(2, 50)
        result = a + b
    elif op == "-":
        a = rng.integer(5, 60)
        b = rng.integer(1, a - 1)
        result = a - b
    elif op == "*":
        a, b = rng.integer(2, 12), rng.integer(2, 9)
        result = a * b
    else:
        b, result = rng.integer(2, 9), rng.integer(2, 12)
        a = b * result
    return f"What is {a} {op} {b}?", f"{a} {op} {b}", result


def _two_step(rng: _Rng) -> tuple[str, str, int]:
    """A two-step problem: (text, expression, result). Always a whole number >= 0."""
    # Every problem multiplies small numbers first, then adds or subtracts a small one: two short
    # steps a 135M model gets right after SFT often enough for GRPO's groups to disagree, and
    # wrong often enough (mostly the second step, or the order of a + b * c) for RL to have room.
    # With two-digit operands its arithmetic, not the reasoning, fails (see docs/benchmarks.md).
    kind = rng.pick([0, 1, 2, 3, 4, 6, 7, 9, 10])
    name, things, foods, box = rng.pick(_NAMES), rng.pick(_THINGS), rng.pick(_FOODS), rng.pick(_CONTAINERS)
    a, b = rng.integer(2, 6), rng.integer(2, 6)
    if kind == 0:
        c = rng.integer(1, min(9, a * b - 1))
        text = (
            f"{name} buys {a} {box} of {things} with {b} in each, then gives away {c}. "
            f"How many {things} does {name} have left?"
        )
        return text, f"{a} * {b} - {c}", a * b - c
    if kind == 1:
        c = rng.integer(2, 9)
        text = (
            f"{name} has {c} {things} and buys {a} {box} with {b} {things} in each. "
            f"How many {things} does {name} have now?"
        )
        return text, f"{c} + {a} * {b}", c + a * b
    if kind == 2:
        c = rng.integer(1, min(9, a * b - 1))
        text = f"A class has {a} rows of {b} desks. {c} desks are empty. How many desks are in use?"
        return text, f"{a} * {b} - {c}", a * b - c
    if kind == 3:
        c = rng.integer(2, 9)
        text = (
            f"{name} reads {a} pages every day for {b} days, then reads {c} more pages. "
            f"How many pages does {name} read in total?"
        )
        return text, f"{a} * {b} + {c}", a * b + c
    if kind == 4:
        c = rng.integer(1, min(9, a * b - 1))
        text = f"{a} friends each bring {b} {foods}, and they eat {c}. How many {foods} are left?"
        return text, f"{a} * {b} - {c}", a * b - c
    if kind == 6:
        price, count = rng.integer(2, 5), rng.integer(2, 4)
        note = 20 if price * count < 20 else 50
        text = (
            f"A ticket costs {price} dollars. {name} buys {count} tickets and pays with a "
            f"{note}-dollar note. How much change does {name} get?"
        )
        return text, f"{note} - {price} * {count}", note - price * count
    if kind == 7:
        c = rng.integer(2, 9)
        text = (
            f"{name} has {c} {things} and gets {a} more every day for {b} days. "
            f"How many {things} does {name} have at the end?"
        )
        return text, f"{c} + {a} * {b}", c + a * b
    # Bare expressions.
    c = rng.integer(1, 9)
    if kind == 9:
        return f"What is {a} * {b} + {c}?", f"{a} * {b} + {c}", a * b + c
    c = rng.integer(1, min(9, a * b - 1))
    return f"What is {a} * {b} - {c}?", f"{a} * {b} - {c}", a * b - c


def _ask(text: str) -> str:
    return f"{text}\n\n{ANSWER_INSTRUCTION}"


def _steps(expression: str) -> list[tuple[str, int]]:
    """``expression`` worked one operation at a time: ``[("7 * 4", 28), ("28 - 5", 23)]``.

    Handles the shapes this module writes: ``a op b`` and ``a op b op c`` (``*`` and ``/`` bind
    tighter).
    """
    tokens = re.findall(r"\d+|[-+*/]", expression)

    def apply(a: int, op: str, b: int) -> int:
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        if op == "/" and a % b:
            raise ValueError(f"{expression}: {a} / {b} is not a whole number")
        return value

    numbers, ops = [int(t) for t in tokens[0::2]], tokens[1::2]
    if len(ops) == 1:
        return [(expression, apply(numbers[0], ops[0], numbers[1]))]
    a, b, c = numbers
    if ops[1] in "*/" and ops[0] in "+-":  # a + b * c: the product first
        first = apply(b, ops[1], c)
        return [(f"{b} {ops[1]} {c}", first), (f"{a} {ops[0]} {first}", apply(a, ops[0], first))]
    first = apply(a, ops[0], b)
    return [(f"{a} {ops[0]} {b}", first), (f"{first} {ops[1]} {c}", apply(first, ops[1], c))]


def _solution(expression: str, result: int) -> str:
    """The worked answer: one ``x op y = z.`` per operation, then the tagged result."""
    steps = _steps(expression)
    if steps[-1][1] != result:
        raise ValueError(f"{expression} worked step by step gives {steps[-1][1]}, not {result}")
    return " ".join(f"{text} = {value}." for text, value in steps) + f" <answer>{result}</answer>"


def _pool(
    make: Callable[[_Rng], tuple[str, str, int]], label: str, count: int
) -> list[tuple[str, str, int]]:
    """``count`` problems with distinct texts, in generation order."""
    rng = _Rng(label)
    seen: set[str] = set()
    out: list[tuple[str, str, int]] = []
    while len(out) < count:
        problem = make(rng)
        if problem[0] not in seen:
            seen.add(problem[0])
            out.append(problem)
    return out


def _splits(
    make: Callable[[_Rng], tuple[str, str, int]], label: str, sizes: dict[str, int]
) -> dict[str, list[tuple[str, str, int]]]:
    """One pool of distinct problems cut into consecutive splits (so no text is in two)."""
    problems = _pool(make, label, sum(sizes.values()))
    out, start = {}, 0
    for split, size in sizes.items():
        out[split] = problems[start : start + size]
        start += size
    return out


def _one_step_pool() -> dict[str, list[tuple[str, str, int]]]:
    sizes = {
        "sft_eval": _N_SFT_EVAL,
        "dpo_eval": _N_DPO_EVAL_ARITH,
        "sft_train": _N_SFT_ARITH,
        "dpo_train": _N_DPO_ARITH,
        "grpo_train": _N_GRPO_ONE_STEP,  # last: the splits before it stay as they were
    }
    return _splits(_one_step, "one-step", sizes)


def _two_step_pool() -> dict[str, list[tuple[str, str, int]]]:
    sizes = {
        "grpo_eval": _N_GRPO_EVAL,
        "grpo_train": _N_GRPO_TRAIN,
        "sft_train": _N_SFT_TWO_STEP,
        "dpo_train": _N_DPO_TWO_STEP,
    }
    return _splits(_two_step, "two-step", sizes)


def _problem_row(text: str, expression: str, result: int, *, tagged: bool = True) -> Row:
    return {"prompt": _ask(text) if tagged else text, "answer": str(result), "expression": expression}


# --------------------------------------------------------------------------- hand-written text
# (in demo_text.py; the held-out part of each list is its last few entries)


def _train(items: Sequence[Any], held_out: int) -> list[Any]:
    return list(items[: len(items) - held_out])


def _held_out(items: Sequence[Any], held_out: int) -> list[Any]:
    return list(items[len(items) - held_out:])


# Pieces for rambling, repetitive answers (the "rejected" side of the DPO pairs).
_OPENERS = [
    "Great question!",
    "Oh, what an interesting question!",
    "Well, let me think about this for a moment.",
    "That is a really good thing to ask about.",
    "Okay, so, this is something a lot of people wonder about.",
    "Hmm, let me see.",
]
_HEDGES = [
    "Of course, there are many ways to look at this, and people might say different things.",
    "I want to be careful here and think about it from every angle.",
    "It depends on a lot of things, but I will try my best.",
    "There is a lot one could say about this topic.",
]
_RESTATEMENTS = ["In other words:", "To say it again:", "So, once more:", "As I said:"]
_CLOSERS = [
    "I hope this helps! Let me know if you have any other questions.",
    "Feel free to ask me anything else. Have a wonderful day!",
    "I hope that answers your question, and thank you for asking!",
    "Let me know if you would like me to explain it again.",
]


def _ramble(answer: str, rng: _Rng) -> str:
    """A long-winded version of ``answer``: filler and repetition around it.

    Kept to a few dozen tokens: the contrast with the concise answer is what DPO learns, and
    every token of a rejected answer costs a forward and a backward pass on a laptop CPU.
    """
    parts = [rng.pick(_OPENERS)]
    if rng.chance(0.3):
        parts.append(rng.pick(_HEDGES))
    parts.append(f"The answer is: {answer}")
    parts.append(f"{rng.pick(_RESTATEMENTS)} {answer}")
    parts.append(rng.pick(_CLOSERS))
    return " ".join(parts)


def _ramble_arithmetic(expression: str, result: int, rng: _Rng) -> str:
    """A long-winded solution: filler, the result said twice, the tag missing or buried mid-text."""
    parts = [rng.pick(_OPENERS), f"We need to work out {expression}, and {expression} is {result}.",
             f"So the answer is {result}."]
    if rng.chance(0.5):
        parts.append(f"<answer>{result}</answer>")
    parts.append(rng.pick(_CLOSERS))
    return " ".join(parts)


# --------------------------------------------------------------------------- splits


def _chat(question: str, answer: str) -> Row:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def sft_train_rows() -> list[Row]:
    """SFT rows ``{"messages": [user, assistant]}``: arithmetic worked step by step, facts and short
    explanations in complete sentences, formatted answers, who the assistant is, and a few refusals
    beside as many harmless look-alikes answered."""
    rows: list[Row] = [
        _chat(_ask(text), _solution(expression, result))
        for text, expression, result in _one_step_pool()["sft_train"] + _two_step_pool()["sft_train"]
    ]
    rows += [_chat(q, a) for q, a, _wrong in _train(FACTS, _EVAL_FACTS)]
    rows += [_chat(q, a) for q, a, _curt in _train(EXPLANATIONS, _EVAL_EXPLANATIONS)]
    rows += [_chat(q, a) for q, a, _bad in FORMAT_TASKS]
    rows += [_chat(q, a) for q, a in IDENTITY]
    rows += [_chat(q, refusal) for q, refusal, _comply in _train(HARMFUL, _EVAL_HARMFUL)[:_SFT_HARMFUL]]
    rows += [_chat(q, answer) for q, answer, _refuse in _train(BENIGN, _EVAL_BENIGN)[:_SFT_BENIGN]]
    # Mixed, so that the first few dozen steps see every kind.
    return _Rng("sft-order").shuffled(rows)


def sft_eval_rows() -> list[Row]:
    """Held-out one-step problems ``{"prompt", "answer", "expression"}`` (tag format, exact match)."""
    return [_problem_row(*p) for p in _one_step_pool()["sft_eval"]]


def _dpo_rows(problems: Sequence[tuple[str, str, int]], facts: Sequence[tuple[str, str, str]],
              explanations: Sequence[tuple[str, str, str]], formats: Sequence[tuple[str, str, str]],
              harmful: Sequence[tuple[str, str, str]], benign: Sequence[tuple[str, str, str]],
              label: str, *, one_pair_per_fact: bool = False) -> list[Row]:
    """Preference pairs of every kind. Each fact is paired twice (against a ramble and against a
    wrong answer; with ``one_pair_per_fact`` against one of them, in turn) and each explanation
    twice (against a ramble and against a curt non-answer): what wins is the complete, correct
    answer of the right length, never merely the shorter one."""
    rng = _Rng(f"{label}-ramble")
    rows: list[Row] = [
        {"prompt": _ask(text), "chosen": _solution(expression, result),
         "rejected": _ramble_arithmetic(expression, result, rng)}
        for text, expression, result in problems
    ]
    for i, (q, answer, wrong) in enumerate(facts):
        if not one_pair_per_fact or i % 2 == 0:
            rows.append({"prompt": q, "chosen": answer, "rejected": _ramble(answer, rng)})
        if not one_pair_per_fact or i % 2 == 1:
            rows.append({"prompt": q, "chosen": answer, "rejected": wrong})
    for q, answer, curt in explanations:
        rows.append({"prompt": q, "chosen": answer, "rejected": _ramble(answer, rng)})
        rows.append({"prompt": q, "chosen": answer, "rejected": curt})
    rows += [{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in formats]
    rows += [{"prompt": q, "chosen": refusal, "rejected": comply} for q, refusal, comply in harmful]
    rows += [{"prompt": q, "chosen": answer, "rejected": refuse} for q, answer, refuse in benign]
    return _Rng(f"{label}-order").shuffled(rows)


def dpo_train_rows() -> list[Row]:
    """Preference pairs ``{"prompt", "chosen", "rejected"}``: complete and concise over rambling,
    curt or wrong; refusal over harmful compliance; help over refusing a harmless request."""
    # Two-step problems too, worked step by step: without them DPO teaches "one step, then the
    # tag" so well that the model stops early on GRPO's problems.
    problems = _one_step_pool()["dpo_train"] + _two_step_pool()["dpo_train"]
    return _dpo_rows(problems, _train(FACTS, _EVAL_FACTS), _train(EXPLANATIONS, _EVAL_EXPLANATIONS),
                     FORMAT_TASKS, _train(HARMFUL, _EVAL_HARMFUL), _train(BENIGN, _EVAL_BENIGN), "dpo-train",
                     one_pair_per_fact=True)


def dpo_eval_rows() -> list[Row]:
    """Held-out preference pairs, on prompts that appear in no training file."""
    return _dpo_rows(_one_step_pool()["dpo_eval"], _held_out(FACTS, _EVAL_FACTS),
                     _held_out(EXPLANATIONS, _EVAL_EXPLANATIONS), [], _held_out(HARMFUL, _EVAL_HARMFUL),
                     _held_out(BENIGN, _EVAL_BENIGN), "dpo-eval")


def grpo_train_rows() -> list[Row]:
    """Problems ``{"prompt", "answer", "expression"}`` for GRPO: two-step ones asking for the
    answer tags, and among the first ``_GRPO_MIXED`` rows (shuffled) ``_N_GRPO_ONE_STEP``
    one-step and ``_N_GRPO_UNTAGGED_TWO_STEP`` two-step ones asked without them."""
    two, one = _two_step_pool()["grpo_train"], _one_step_pool()["grpo_train"]
    tagged = _GRPO_MIXED - len(one) - _N_GRPO_UNTAGGED_TWO_STEP
    head = [_problem_row(*p) for p in two[:tagged]]
    head += [_problem_row(*p, tagged=False) for p in [*two[tagged : tagged + _N_GRPO_UNTAGGED_TWO_STEP], *one]]
    rest = two[tagged + _N_GRPO_UNTAGGED_TWO_STEP:]
    return [*_Rng("grpo-mixed").shuffled(head), *(_problem_row(*p) for p in rest)]


def grpo_eval_rows() -> list[Row]:
    """Held-out two-step problems for exact match."""
    return [_problem_row(*p) for p in _two_step_pool()["grpo_eval"]]


FILES: dict[str, Callable[[], list[Row]]] = {
    "sft_train.jsonl": sft_train_rows,
    "sft_eval.jsonl": sft_eval_rows,
    "dpo_train.jsonl": dpo_train_rows,
    "dpo_eval.jsonl": dpo_eval_rows,
    "grpo_train.jsonl": grpo_train_rows,
    "grpo_eval.jsonl": grpo_eval_rows,
}


EVALS_DIR = DATA_DIR.parent.parent / "evals" / "data"
_WORD = re.compile(r"[a-z0-9]+")


def _prompt_text(row: Row) -> str:
    if "messages" in row:
        return next(m["content"] for m in row["messages"] if m["role"] == "user")
    prompt = row["prompt"]
    return prompt if isinstance(prompt, str) else next(m["content"] for m in prompt if m["role"] == "user")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def evaluation_overlaps(files: dict[str, list[Row]], evals_dir: Path = EVALS_DIR,
                        threshold: float = 0.8) -> list[str]:
    """Demo prompts that are (nearly) one of the behaviour evaluations' prompts: the same words,
    or a word overlap (Jaccard) of ``threshold`` or more. The evaluations must measure what a rung
    changed beyond its own training data, so the generator refuses to write such a file."""
    evals = []
    for path in sorted(evals_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                evals.append((f"{path.name}:{item['id']}", _words(item["prompt"])))
    found = []
    for name, rows in files.items():
        for i, row in enumerate(rows):
            words = _words(_prompt_text(row))
            for where, other in evals:
                if words and len(words & other) / len(words | other) >= threshold:
                    found.append(f"{name} row {i} ({_prompt_text(row)[:60]!r}) is evaluation item {where}")
    return found


def build_all() -> dict[str, list[Row]]:
    """Every demo dataset, by file name.

    Raises:
        ValueError: a demo prompt is (nearly) one of the behaviour evaluations' prompts.
    """
    files = {name: make() for name, make in FILES.items()}
    overlaps = evaluation_overlaps(files)
    if overlaps:
        raise ValueError("demo prompts overlap ladder's behaviour evaluations:\n" + "\n".join(overlaps))
    return files


def to_jsonl(rows: Sequence[Row]) -> str:
    """Rows as JSON Lines text (UTF-8 kept as is, keys in insertion order, ``\\n`` endings)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_all(out_dir: str | Path) -> list[Path]:
    """Write every demo dataset into ``out_dir`` (created if needed); return the file paths."""
    out = Path(out_dir)
    paths = []
    for name, rows in build_all().items():
        path = out / name
        atomic_write_text(path, to_jsonl(rows))
        path.chmod(0o644)  # package data: readable by everyone, unlike the temp file's 0600
        logger.info("wrote %d rows to %s", len(rows), path)
        paths.append(path)
    return paths


def data_file(name: str) -> Path:
    """The path of a shipped demo file, e.g. ``data_file("sft_train.jsonl")``."""
    if name not in FILES:
        raise KeyError(f"no demo dataset {name!r}; known: {', '.join(FILES)}")
    return DATA_DIR / name


def load_split(name: str) -> list[Row]:
    """Read a shipped demo file (``"sft_train"`` or ``"sft_train.jsonl"``) as a list of rows."""
    file = name if name.endswith(".jsonl") else f"{name}.jsonl"
    text = data_file(file).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/make_demo_data.py --out DIR``: regenerate the demo datasets into DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m ladder.demo.data", description="Regenerate ladder's demo datasets."
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write the JSONL files into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_all(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
