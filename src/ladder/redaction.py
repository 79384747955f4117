"""Keeping credentials out of every file and log ladder writes: one redaction, used everywhere.

Two rules find a secret:

- **by key**: a setting whose name says it holds a credential (``hf_token``, ``api_key``,
  ``wandb_key``, ``modal_token_id``, ``gh_token``, ``bearer``, ``*secret*``, ``*password*``,
  ``credentials``, ...). A name's words are looked at, not its letters: ``max_new_tokens``,
  ``tokenizer``, ``num_tokens`` have no word ``token``; ``pad_token``, ``eos_token_ids``,
  ``end_of_turn_token`` name a *kind* of token of the vocabulary, and ``num_key_value_heads``
  or ``prompt_key`` a column or a tensor, so none of them is a secret.
- **by shape**, anywhere inside a string: Hugging Face (``hf_...``), OpenAI/Anthropic (``sk-...``),
  GitHub (``ghp_...``, ``github_pat_...``), AWS access key ids, Modal (``ak-``/``as-``) tokens,
  40-hex W&B keys, the password of ``user:password@`` in a URL and ``Bearer x``.

:func:`redact` copies a JSON-like value with both rules applied (the manifest, ``metrics.json``,
model cards, worker errors); :func:`redact_text` applies the shapes to a string (error
messages, relayed worker output); :class:`RedactingFilter` does it to every log record a
handler emits. With a ``mask`` of its own, :func:`redact` also seals a stage spec: each secret
is replaced by a placeholder and travels to the worker in its environment instead
(:mod:`ladder.executors.spec`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["MASK", "RedactingFilter", "is_secret_key", "redact", "redact_text"]

MASK = "***"

# Words that make a setting's name a credential's, whatever else it says.
_SECRET_WORDS = {
    "secret", "secrets", "password", "passwords", "passwd", "passphrase", "pwd", "credential", "credentials",
    "creds", "bearer", "auth", "authorization", "apikey", "cookie",
}
# `<role>_token`: a kind of token of the vocabulary (pad, eos, ...), not a credential.
_TOKEN_ROLES = {
    "pad", "eos", "bos", "unk", "sep", "cls", "mask", "turn", "stop", "start", "end", "special", "prompt",
    "completion", "answer", "image", "audio", "video", "vision", "placeholder", "think", "tool", "sentinel",
    "new", "first", "last", "max", "min", "num", "decoder", "forced", "eot", "eom", "im", "chat", "system",
}
# `<role>_key`: a column, a field or a tensor, not a credential.
_KEY_ROLES = {
    "text", "prompt", "answer", "column", "label", "field", "reward", "sort", "group", "cache", "primary", "dict",
    "metric", "hash", "dataset", "data", "message", "messages", "role", "content", "chosen", "rejected",
    "completion", "image", "input", "output", "id", "name", "query", "value", "lookup", "index", "split",
}
# Settings whose 40-hex value is a commit (or a path holding one), not a W&B key.
_HEX_ALLOWED = {"revision", "commit", "sha", "hash", "digest", "fingerprint", "path", "dir"}

_SHAPES = [
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\ba[ks]-[A-Za-z0-9]{16,}"),  # Modal token id / secret
]
_WANDB = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{40}(?![0-9A-Za-z])")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9._~+/=\-]+")


def _words(key: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)  # camelCase -> camel_Case
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: Any) -> bool:
    """Whether a setting named ``key`` holds a credential (see the module docs).

    Example:
        >>> [is_secret_key(k) for k in ("hf_token", "wandb_key", "modal_token_id", "bearer", "db_password")]
        [True, True, True, True, True]
        >>> [is_secret_key(k) for k in ("max_new_tokens", "pad_token", "eos_token_ids", "tokenizer", "prompt_key")]
        [False, False, False, False, False]
    """
    if not isinstance(key, str):
        return False
    words = _words(key)
    if any(w in _SECRET_WORDS for w in words):
        return True
    for i, word in enumerate(words):
        before = set(words[:i])
        if word == "token" and not before & _TOKEN_ROLES:
            return True
        if word == "key" and not before & _KEY_ROLES and words[i + 1 : i + 2] != ["value"]:
            return True
    return False


def _spans(text: str, *, hex_ok: bool = False) -> Iterator[tuple[int, int]]:
    for shape in _SHAPES:
        for m in shape.finditer(text):
            yield m.span()
    if not hex_ok:
        for m in _WANDB.finditer(text):
            yield m.span()
    for m in _URL_PASSWORD.finditer(text):
        yield m.end("head"), m.end() - 1
    for m in _BEARER.finditer(text):
        yield m.end("head"), m.end()


def redact_text(text: str, *, hex_ok: bool = False, mask: Callable[[str], str] | None = None) -> str:
    """``text`` with every secret-shaped part replaced by ``***`` (``hex_ok``: keep 40-hex runs;
    ``mask``: what replaces a secret, given the secret).

    Example:
        >>> redact_text("https://user:s3cret@host/x and Bearer abc.def")
        'https://user:***@host/x and Bearer ***'
    """
    merged: list[list[int]] = []
    for start, end in sorted(_spans(text, hex_ok=hex_ok)):
        if merged and start <= merged[-1][1]:  # overlapping shapes (a token inside a URL) mask once
            merged[-1][1] = max(merged[-1][1], end)
        elif end > start:
            merged.append([start, end])
    if not merged:
        return text
    out, at = [], 0
    for start, end in merged:
        out += [text[at:start], mask(text[start:end]) if mask else MASK]
        at = end
    out.append(text[at:])
    return "".join(out)


def _hex_allowed(key: Any) -> bool:
    return isinstance(key, str) and bool(set(_words(key)) & _HEX_ALLOWED)


def _holds_text(value: Any) -> bool:
    """Credentials are strings (or mappings and lists of them); a flag or a number under a
    credential-looking name (``token_healing: true``) is left as it is."""
    return bool(value) and isinstance(value, (str, Mapping, list, tuple))


def redact(value: Any, *, mask: Callable[[str], str] | None = None, _hex_ok: bool = False) -> Any:
    """A copy of a JSON-like ``value`` with credentials replaced by ``***``: the values of secret
    keys (:func:`is_secret_key`) and secret-shaped parts of strings (:func:`redact_text`).

    ``mask`` (default: always ``***``) gives the replacement of each secret string; under a
    secret key it is called on every string of the value.
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if is_secret_key(k) and _holds_text(v):
                out[k] = MASK if mask is None else _whole(v, mask)
            else:
                out[k] = redact(v, mask=mask, _hex_ok=_hex_allowed(k))
        return out
    if isinstance(value, (list, tuple)):
        return [redact(v, mask=mask) for v in value]
    if isinstance(value, str):
        return redact_text(value, hex_ok=_hex_ok, mask=mask)
    return value


def _whole(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _whole(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_whole(v, mask) for v in value]
    return mask(value) if isinstance(value, str) and value else value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts secret shapes from every record's message (and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: leave it to the handler
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
