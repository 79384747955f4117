"""Does a free-text answer give one of the accepted answers? Normalised alias matching.

Both sides are normalised the same way (:func:`normalise`): Unicode compatibility forms and
accents folded (``Brasília`` = ``Brasilia``, ``H₂O`` = ``H2O``), lower case, ``&`` read as
``and``, thousands separators dropped (``1,000`` = ``1000``), every other punctuation mark a
space, the articles *a*, *an*, *the* dropped, whitespace collapsed. An answer matches when an
accepted answer occurs in it as whole words (:func:`mentions`): ``"The capital of France is
Paris."`` matches ``Paris``, ``"18 legs"`` does not match ``8``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["matches_any", "mentions", "normalise"]

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# Words are runs of letters and digits; a decimal point inside a number stays (3.5 is not 35).
_WORD = re.compile(r"[^\W_]+(?:\.\d+)*")


def normalise(text: str) -> str:
    """``text`` folded for comparison (see the module docstring).

    >>> normalise("The capital is Brasília!")
    'capital is brasilia'
    >>> normalise("H₂O"), normalise("1,000 km"), normalise("3.5 cm"), normalise("Rock & Roll")
    ('h2o', '1000 km', '3.5 cm', 'rock and roll')
    """
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    folded = folded.replace("&", " and ")
    folded = _THOUSANDS.sub("", folded)
    return " ".join(w for w in _WORD.findall(folded) if not _ARTICLES.fullmatch(w))


def mentions(answer: str, accepted: str) -> bool:
    """Whether ``accepted`` occurs in ``answer`` as whole words, after :func:`normalise`.

    >>> mentions("I think it is Canberra, not Sydney.", "canberra")
    True
    >>> mentions("A spider has 18 legs", "8"), mentions("Eight legs.", "eight")
    (False, True)
    """
    needle = normalise(accepted)
    if not needle:
        return False
    return f" {needle} " in f" {normalise(answer)} "


def matches_any(answer: str, accepted: Iterable[str]) -> bool:
    """Whether ``answer`` :func:`mentions` any of the ``accepted`` answers.

    >>> matches_any("Leonardo da Vinci painted it.", ["da Vinci", "Leonardo"])
    True
    >>> matches_any("", ["Paris"])
    False
    """
    return any(mentions(answer, a) for a in accepted)
