"""Watching the model change: probe and measure one checkpoint.

The pipeline calls :func:`observe` for the base model and after every stage, with the same
probes, evaluation data and generation settings, and feeds what it returns to the report.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.atomic import atomic_write_text
from ladder.checkpoint import Checkpoint
from ladder.errors import ConfigError
from ladder.generation import Generation, GenerationSettings
from ladder.probes import Probe

__all__ = ["EVAL_KINDS", "PROBES_FILE", "observe"]

logger = logging.getLogger(__name__)

PROBES_FILE = "probes.jsonl"
#: The evaluation data :func:`observe` understands.
EVAL_KINDS = ("preference", "verifiable")


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def observe(
    checkpoint: Checkpoint | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    probes: Sequence[Probe] | None = None,
    evals: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
    reference: Checkpoint | None = None,
) -> dict[str, Any]:
    """Probe and evaluate one checkpoint.

    Loads the model once, answers the probes (written to ``out_dir/probes.jsonl``, one JSON row
    per probe, see :func:`ladder.probes.run_probes`) and runs the evaluations.
    Generation uses the transformers backend on that one loaded model: the same weights then
    serve probes, log-prob scoring and verifiable answers, and nothing is loaded twice.

    A reward checkpoint (``kind="reward"``) answers no probes and has no behaviour; its
    preference evaluation uses its scalar score (:func:`ladder.evaluate.reward_model_accuracy`).

    Args:
        checkpoint: the checkpoint (or a model directory / hub id, taken as a policy).
        out_dir: where ``probes.jsonl`` is written (the pipeline publishes it atomically).
        probes: the probes to answer (see :func:`ladder.probes.resolve_probes`); ``None``
            means the defaults, an empty sequence none.
        evals: ``{"preference": [pair rows], "verifiable": [problem rows]}``; either may be
            absent or empty.
        settings: generation settings for probes and verifiable problems.
        options: run options for loading (``trust_remote_code``, ``revision``, ...).
        reference: the checkpoint preference accuracy is measured against (the pipeline passes
            the base model): DPO's implicit reward ``beta * (logp - logp_ref)`` tells how far a
            stage moved towards the chosen answers. Summed log-probs alone favour whichever
            answer is shorter, so they are kept only as ``logp_accuracy``. Without a reference,
            or for the reference itself, accuracy is the reference-free log-prob comparison.

    Returns:
        ``{"eval": {"preference": {...}, "verifiable": {...}}, "behaviour": {...}}`` with only
        the evaluations that ran; ``behaviour`` (see :func:`ladder.metrics.behaviour`) is
        measured on the probe answers and empty when no probe ran.
    """
    from ladder.evaluate import (
        check_pairs,
        check_problems,
        reward_model_accuracy,
        verifiable_accuracy,
    )
    from ladder.metrics import behaviour
    from ladder.probes import DEFAULT_PROBES, run_probes
    from ladder.training.models import load_model, load_tokenizer

    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.base(os.fspath(checkpoint))
    evals = dict(evals or {})
    unknown = set(evals) - set(EVAL_KINDS)
    if unknown:
        raise ConfigError(f"unknown evaluation data {sorted(unknown)}; known: {', '.join(EVAL_KINDS)}")
    settings = settings or GenerationSettings()
    probes = list(DEFAULT_PROBES if probes is None else probes)
    out_dir = Path(out_dir)

    result: dict[str, Any] = {"eval": {}, "behaviour": {}}
    if checkpoint.kind == "reward":
        # A sequence classifier does not generate: no probes, no verifiable answers.
        probes, evals = [], {k: v for k, v in evals.items() if k == "preference"}
    if not probes and not any(evals.values()):
        return result
    # Malformed rows fail here, before a model is loaded.
    check_pairs(evals.get("preference") or ())
    check_problems(evals.get("verifiable") or ())
    started = time.monotonic()
    tokenizer = load_tokenizer(checkpoint, options)
    model = load_model(checkpoint, options, kind=checkpoint.kind)
    try:
        if checkpoint.kind == "reward":
            if evals.get("preference"):
                result["eval"]["preference"] = reward_model_accuracy(model, tokenizer, evals["preference"])
        else:
            if probes:
                rows = run_probes(model, tokenizer, probes, settings)
                atomic_write_text(
                    out_dir / PROBES_FILE,
                    "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                )
                gens = [
                    Generation(r["answer"], r["num_tokens"], r["stopped"], r["finish_reason"]) for r in rows
                ]
                result["behaviour"] = behaviour(gens)
            if evals.get("preference"):
                result["eval"]["preference"] = _preference(
                    model, tokenizer, evals["preference"], checkpoint, reference, options, settings
                )
            if evals.get("verifiable"):
                result["eval"]["verifiable"] = verifiable_accuracy(
                    model, tokenizer, evals["verifiable"], settings
                )
    finally:
        # The pipeline goes on to train the next stage in this process: give the memory back.
        del model
        _release_memory()
    logger.debug("observed %s in %.1fs", checkpoint.stage, time.monotonic() - started)
    return result


# Per-answer log-probs of the checkpoints observed in this process, so that every stage of a run
# is compared with the base model without loading and scoring the base model again:
# {(fingerprint, dtype, pairs digest): scores}. A checkpoint's fingerprint names its weights (see
# ladder.pipeline), so a hit is the same model on the same pairs. Bounded: a run observes few.
_SCORES: dict[tuple[str, str, str], list[float]] = {}
_SCORES_MAX = 8


def _pairs_digest(pairs: Sequence[Mapping[str, Any]]) -> str:
    import hashlib

    blob = json.dumps([[r["prompt"], r["chosen"], r["rejected"]] for r in pairs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _remember(checkpoint: Checkpoint, where: tuple[str, str], scores: list[float]) -> None:
    """Keep ``scores`` of ``checkpoint`` under ``where`` = (dtype, pairs digest)."""
    if not checkpoint.fingerprint:
        return
    if len(_SCORES) >= _SCORES_MAX:
        _SCORES.pop(next(iter(_SCORES)))
    _SCORES[(checkpoint.fingerprint, *where)] = list(scores)


def _preference(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Mapping[str, Any]],
    checkpoint: Checkpoint,
    reference: Checkpoint | None,
    options: Mapping[str, Any] | None,
    settings: GenerationSettings,
) -> dict[str, Any]:
    """Implicit-reward accuracy against ``reference`` (+ the reference-free log-prob accuracy).

    The policy is scored once; the reference's scores come from this process's cache when the
    reference was observed earlier (the pipeline observes the base model first), else the
    reference is loaded and scored once.
    """
    from ladder.evaluate import pair_logprobs, preference_summary
    from ladder.training.models import load_model

    scores = pair_logprobs(model, tokenizer, pairs, batch_size=settings.batch_size)
    where = (str(next(model.parameters()).dtype), _pairs_digest(pairs))
    _remember(checkpoint, where, scores)
    logp = preference_summary(scores)
    if reference is None:
        return logp
    out: dict[str, Any] = {"logp_accuracy": logp["accuracy"], "logp_margin": logp["margin"],
                           "n": logp["n"], "reference": reference.stage}
    if reference.fingerprint == checkpoint.fingerprint:
        # policy == reference: every implicit reward is exactly 0, every pair a tie
        out.update(accuracy=0.5, margin=0.0)
        return out
    ref_scores = _SCORES.get((reference.fingerprint, *where)) if reference.fingerprint else None
    if ref_scores is None:
        ref_model = load_model(reference, options)
        try:
            ref_scores = pair_logprobs(ref_model, tokenizer, pairs, batch_size=settings.batch_size)
        finally:
            del ref_model
            _release_memory()
        _remember(reference, where, ref_scores)
    implicit = preference_summary(scores, ref_scores)
    out.update(accuracy=implicit["accuracy"], margin=implicit["margin"])
    return out
