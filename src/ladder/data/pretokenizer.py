"""The tokenizer pre-flight measures rows with, when it can have one without downloading."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ladder.stage import StageContext

__all__ = ["preflight_tokenizer"]

logger = logging.getLogger(__name__)


def preflight_tokenizer(ctx: StageContext) -> PreTrainedTokenizerBase | None:
    """The tokenizer pre-flight measures lengths with: the base model's, when it is a local folder
    or a hub model already in the local Hugging Face cache.

    Returns ``None`` (lengths are then checked when the stage runs, with its input's tokenizer)
    for a hub model that is not cached: pre-flight downloads nothing.
    """
    from pathlib import Path

    base = (ctx.checkpoints or {}).get("base")
    if base is None:
        return None
    trust = bool((ctx.options or {}).get("trust_remote_code", False))
    if Path(base.path).is_dir():
        return _tokenizer(base.path, None, trust, False)
    if _cached_on_hub(base.path, base.revision):
        try:
            return _tokenizer(base.path, base.revision, trust, True)
        except Exception:  # an incomplete cache: measured when the stage runs
            logger.debug("could not load the cached tokenizer of %s", base.path, exc_info=True)
    return None


def _cached_on_hub(repo_id: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "tokenizer_config.json", revision=revision)
    except Exception:  # not a valid repo id, or no hub library
        return False
    return isinstance(found, str)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, revision: str | None, trust_remote_code: bool, cached: bool) -> Any:
    if not cached:
        from ladder.training.models import load_tokenizer

        return load_tokenizer(path, {"trust_remote_code": trust_remote_code})
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                        local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
