"""Instruction following: constraints on the form of an answer, each verified by code.

An item of the ``instructions`` suite is a prompt plus the checks its instructions imply, e.g.
``{"prompt": "Describe the sea in at most ten words.", "checks": [{"check": "max_words", "n": 10}]}``.
An answer follows the instructions when it is not empty and passes *every* check (the strict,
prompt-level score of IFEval). :data:`CHECKS` lists the checks and their arguments:

======================  ==============================================================
``max_words``/``min_words`` ``n``: at most / at least ``n`` words
``sentences``           ``min`` and/or ``max``: the number of sentences
``includes``            ``words``: every word present (whole words, any case)
``excludes``            ``words``: none of them present
``min_count``           ``word``, ``n``: the word appears at least ``n`` times
``no_commas``           no comma at all
``lowercase``           letters, none of them upper case
``uppercase``           letters, all of them upper case
``no_digits``           no digit 0-9
``bullets``             ``n``: exactly ``n`` Markdown bullet lines (``-``, ``*`` or ``•``)
``numbered``            ``n``: exactly ``n`` numbered lines (``1.`` or ``1)``)
``json_keys``           ``keys``: a JSON object (code fences allowed) holding every key
``starts_with``         ``text``: the answer begins with it (case and leading quotes ignored)
``ends_with``           ``text``: the answer ends with it (case and a final mark ignored)
``quoted``              the whole answer wrapped in double quotes
``question``            the answer ends with a question mark
``title``               a title in double angular brackets, ``<<like this>>``
``postscript``          a line starting with ``P.S.``
``placeholders``        ``n``: at least ``n`` placeholders in square brackets, ``[name]``
``one_of``              ``options``: the whole answer is one of them (normalised)
======================  ==============================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ladder.errors import ConfigError
from ladder.evals.matching import normalise

__all__ = ["CHECKS", "check_answer", "validate_checks", "word_count", "sentence_count"]

_WORDS = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_SENTENCE = re.compile(r"[^.!?]*[^\W_][^.!?]*(?:[.!?]+|$)")
_BULLET = re.compile(r"^\s*[-*\u2022]\s+\S", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_LEAD = " \t\n\"'*`\u201c\u2018"


def word_count(text: str) -> int:
    """Words in ``text`` (runs of letters/digits; ``don't`` and ``well-known`` are one).

    >>> word_count("Don't panic: it's a well-known trick, 100%.")
    7
    """
    return len(_WORDS.findall(text))


def sentence_count(text: str) -> int:
    """Sentences in ``text``: stretches with a word, ended by ``.``, ``!``, ``?`` or the end.

    >>> sentence_count("Rain falls. It is wet! Why? yes")
    4
    """
    return sum(1 for m in _SENTENCE.finditer(text) if m.group().strip())


def _words_of(text: str) -> list[str]:
    return normalise(text).split()


def _count(text: str, word: str) -> int:
    needle = normalise(word)
    words = _words_of(text)
    size = len(needle.split())
    return sum(1 for i in range(len(words) - size + 1) if " ".join(words[i : i + size]) == needle)


def _json_object(text: str) -> Any:
    body = _FENCE.sub("", text.strip()).strip()
    for candidate in (body, body[body.find("{") : body.rfind("}") + 1] if "{" in body else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def _strip_end(text: str) -> str:
    return text.rstrip().rstrip(".!?\"'\u201d").rstrip().lower()


def _letters(text: str) -> str:
    return "".join(c for c in text if c.isalpha())


Check = Callable[[str, Mapping[str, Any]], bool]

CHECKS: dict[str, tuple[tuple[str, ...], Check]] = {
    # name: (required arguments, check(answer, arguments))
    "max_words": (("n",), lambda t, a: word_count(t) <= a["n"]),
    "min_words": (("n",), lambda t, a: word_count(t) >= a["n"]),
    "sentences": ((), lambda t, a: a.get("min", 0) <= sentence_count(t) <= a.get("max", 10**9)),
    "includes": (("words",), lambda t, a: all(_count(t, w) > 0 for w in a["words"])),
    "excludes": (("words",), lambda t, a: not any(_count(t, w) > 0 for w in a["words"])),
    "min_count": (("word", "n"), lambda t, a: _count(t, a["word"]) >= a["n"]),
    "no_commas": ((), lambda t, a: "," not in t and "\uff0c" not in t),
    "lowercase": ((), lambda t, a: bool(_letters(t)) and t == t.lower()),
    "uppercase": ((), lambda t, a: bool(_letters(t)) and t == t.upper()),
    "no_digits": ((), lambda t, a: not re.search(r"[0-9]", t)),
    "bullets": (("n",), lambda t, a: len(_BULLET.findall(t)) == a["n"]),
    "numbered": (("n",), lambda t, a: len(_NUMBERED.findall(t)) == a["n"]),
    "json_keys": (
        ("keys",),
        lambda t, a: isinstance(obj := _json_object(t), dict) and all(k in obj for k in a["keys"]),
    ),
    "starts_with": (("text",), lambda t, a: t.lstrip(_LEAD).lower().startswith(a["text"].lower())),
    "ends_with": (
        ("text",),
        lambda t, a: t.rstrip().lower().endswith(a["text"].lower()) or _strip_end(t).endswith(_strip_end(a["text"])),
    ),
    "quoted": ((), lambda t, a: len(s := t.strip()) > 2 and s[0] in "\"\u201c" and s[-1] in "\"\u201d"),
    "question": ((), lambda t, a: t.rstrip().endswith("?")),
    "title": ((), lambda t, a: bool(re.search(r"<<[^<>\n]+>>", t))),
    "postscript": ((), lambda t, a: bool(re.search(r"^\s*p\.\s?s\.", t, re.IGNORECASE | re.MULTILINE))),
    "placeholders": (("n",), lambda t, a: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= a["n"]),
    "one_of": (("options",), lambda t, a: normalise(t) in {normalise(o) for o in a["options"]}),
}


def validate_checks(checks: Any, where: str) -> list[dict[str, Any]]:
    """The checks of one item as a list of mappings; raises :class:`ConfigError` naming ``where``."""
    if not isinstance(checks, Sequence) or isinstance(checks, (str, bytes)) or not checks:
        raise ConfigError(f"{where}: 'checks' must be a non-empty list of {{check: NAME, ...}} mappings")
    out = []
    for check in checks:
        if not isinstance(check, Mapping) or check.get("check") not in CHECKS:
            raise ConfigError(f"{where}: unknown check {check!r}; known: {', '.join(sorted(CHECKS))}")
        missing = [k for k in CHECKS[check["check"]][0] if k not in check]
        if missing:
            raise ConfigError(f"{where}: check {check['check']!r} needs {', '.join(missing)}")
        out.append(dict(check))
    return out


def check_answer(answer: str, checks: Sequence[Mapping[str, Any]]) -> tuple[bool, list[str]]:
    """``(passed, names of the failed checks)``; an empty answer fails every check.

    >>> check_answer("- apple\\n- pear\\n- plum", [{"check": "bullets", "n": 3}, {"check": "no_commas"}])
    (True, [])
    >>> check_answer("Apples, pears.", [{"check": "lowercase"}, {"check": "no_commas"}])
    (False, ['lowercase', 'no_commas'])
    """
    if not answer.strip():
        return False, [c["check"] for c in checks]
    failed = [c["check"] for c in checks if not CHECKS[c["check"]][1](answer, c)]
    return not failed, failed
