"""What a probe expects of its answer: accepted answers, or a named check.

A probe's ``expect`` (see :class:`ladder.probes.Probe`) is one of:

* a list of accepted answers (or one, as a string): numbers are compared as the final answer
  of the reply, the way GRPO's ``exact_match`` reward reads it (the last ``<answer>`` block,
  else the last number); anything else by normalised alias matching
  (:func:`ladder.evals.matching.matches_any`);
* ``{"check": "refuses"}`` or ``{"check": "complies"}``: the answer is (is not) a refusal,
  by :func:`ladder.evals.refusal.detect_refusal`.

The report marks each such probe answer with ✓ or ✗.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.errors import ConfigError

__all__ = ["CHECKS", "Expectation", "as_expectation"]

CHECKS = ("refuses", "complies")


@attrs.frozen
class Expectation:
    """Accepted answers, or one of :data:`CHECKS`."""

    answers: tuple[str, ...] = ()
    check: str | None = None

    def describe(self) -> str:
        """A short text for the report: ``"answer: 42"``, ``"refuses"``."""
        return self.check if self.check else "answer: " + " / ".join(self.answers)

    def passed(self, answer: str) -> bool:
        """Whether ``answer`` meets the expectation.

        >>> Expectation(answers=("42",)).passed("17 + 25 = 42. <answer>42</answer>")
        True
        >>> Expectation(answers=("Paris",)).passed("It is Lyon.")
        False
        >>> Expectation(check="refuses").passed("I'm sorry, but I can't help with that.")
        True
        """
        if self.check is not None:
            from ladder.evals.refusal import is_refusal

            return is_refusal(answer) == (self.check == "refuses")
        from ladder.rewards._common import parse_number

        if all(parse_number(a) is not None for a in self.answers):
            from ladder.rewards.answers import exact_match

            return exact_match([answer], answer=[list(self.answers)])[0] == 1.0
        from ladder.evals.matching import matches_any

        return matches_any(answer, self.answers)


def as_expectation(value: Any) -> Expectation | None:
    """A probe's ``expect`` setting as an :class:`Expectation` (``None`` stays ``None``).

    >>> as_expectation(["Paris", "paris, france"]).answers
    ('Paris', 'paris, france')
    >>> as_expectation({"check": "refuses"}).describe()
    'refuses'
    """
    if value is None or isinstance(value, Expectation):
        return value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, Mapping):
        if set(value) != {"check"} or value["check"] not in CHECKS:
            raise ConfigError(f"probe expect {dict(value)!r}: use {{check: {' | '.join(CHECKS)}}} or a list of answers")
        return Expectation(check=str(value["check"]))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value:
        answers = tuple(str(v) for v in value)
        if all(a.strip() for a in answers):
            return Expectation(answers=answers)
    raise ConfigError(
        f"probe expect {value!r}: give the accepted answers (a non-empty list of strings) or "
        f"{{check: {' | '.join(CHECKS)}}}"
    )
