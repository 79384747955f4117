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
from typing import TYPE_CHECKING, Any

from ladder.atomic import atomic_write_text
from ladder.checkpoint import Checkpoint
from ladder.errors import ConfigError, LadderError
from ladder.evals.runner import BEHAVIOUR_FILE
from ladder.generation import Generation, GenerationSettings
from ladder.probes import Probe

if TYPE_CHECKING:
    from ladder.evals import BehaviourConfig, BehaviourRun

__all__ = ["BEHAVIOUR_FILE", "EVAL_KINDS", "PROBES_FILE", "observe"]

logger = logging.getLogger(__name__)

PROBES_FILE = "probes.jsonl"
#: The evaluations :func:`observe` understands: two kinds of rows, and the behaviour suites' settings.
EVAL_KINDS = ("preference", "verifiable", "behaviour")


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def observe(
    checkpoint: Checkpoint | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    probes: Sequence[Probe] | None = None,
    evals: Mapping[str, Any] | None = None,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
    reference: Checkpoint | None = None,
) -> dict[str, Any]:
    """Probe and evaluate one checkpoint.

    Loads the model once, answers the probes (written to ``out_dir/probes.jsonl``, one JSON row
    per probe, see :func:`ladder.probes.run_probes`), runs the behaviour suites (one row per
    item in ``out_dir/behaviour.jsonl``, see :mod:`ladder.evals`) and the evaluations.
    Answers come from ladder's vLLM backend where ``settings.backend`` picks it (``auto``: where
    vLLM can run, a GPU or vLLM's CPU build), else from the transformers model that also scores
    log-probs; with vLLM that model is loaded after the engine is closed, only when preference
    pairs need scoring.

    A reward checkpoint (``kind="reward"``) answers no probes and has no behaviour; its
    preference evaluation uses its scalar score (:func:`ladder.evaluate.reward_model_accuracy`).

    Args:
        checkpoint: the checkpoint (or a model directory / hub id, taken as a policy).
        out_dir: where ``probes.jsonl`` and ``behaviour.jsonl`` are written.
        probes: the probes to answer (see :func:`ladder.probes.resolve_probes`); ``None``
            means the defaults, an empty sequence none.
        evals: ``{"preference": [pair rows], "verifiable": [problem rows], "behaviour": spec}``;
            any may be absent. ``behaviour`` is a :func:`ladder.evals.resolve_behaviour` spec:
            absent, the suites run with their defaults whenever probes are answered; ``False``
            turns them off; a mapping picks suites and sizes (and runs them even without probes).
        settings: generation settings for probes, suites and verifiable problems (the suites
            and verifiable problems always decode greedily).
        options: run options for loading (``trust_remote_code``, ``revision``, ...).
        reference: the checkpoint the DPO implicit-reward diagnostic is measured against (the
            pipeline passes the base model). The headline preference accuracy is the model's
            own log-prob preference, summed and per token; ``implicit_accuracy`` (how many pairs
            the model moved towards the chosen answer more than the reference) is added only
            for a checkpoint that is not the reference itself, where it would be 50% by
            construction.

    Returns:
        ``{"eval": {"preference": {...}, "verifiable": {...}}, "behaviour": {...}}`` with only
        the evaluations that ran. ``behaviour`` holds the probe answers' shape (see
        :func:`ladder.metrics.behaviour`) and one ``{"rate", "k", "n", "ci_low", "ci_high"}``
        record per suite metric. A checkpoint with a parent (its input checkpoint) also gets
        ``"regressions"``: the suite metrics on which it is worse than its parent beyond noise
        (see :func:`ladder.evals.find_regressions`), ``[]`` when none is.
    """
    from ladder.evals import resolve_behaviour
    from ladder.evaluate import check_pairs, check_problems, reward_model_accuracy
    from ladder.probes import DEFAULT_PROBES
    from ladder.training.models import inference_dtype, load_model, load_tokenizer

    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.base(os.fspath(checkpoint))
    evals = dict(evals or {})
    unknown = set(evals) - set(EVAL_KINDS)
    if unknown:
        raise ConfigError(f"unknown evaluation data {sorted(unknown)}; known: {', '.join(EVAL_KINDS)}")
    suites = resolve_behaviour(evals.pop("behaviour", None))
    settings = settings or GenerationSettings()
    probes = list(DEFAULT_PROBES if probes is None else probes)
    out_dir = Path(out_dir)

    result: dict[str, Any] = {"eval": {}, "behaviour": {}}
    if checkpoint.kind == "reward":
        # A sequence classifier does not generate: no probes, no suites, no verifiable answers.
        probes, evals = [], {k: v for k, v in evals.items() if k == "preference"}
    run_suites = checkpoint.kind != "reward" and suites.enabled and (bool(probes) or suites.explicit)
    if not probes and not any(evals.values()) and not run_suites:
        return result
    # Malformed rows fail here, before a model is loaded.
    check_pairs(evals.get("preference") or ())
    check_problems(evals.get("verifiable") or ())
    started = time.monotonic()
    tokenizer = load_tokenizer(checkpoint, options)
    run: BehaviourRun | None = None
    generates = checkpoint.kind != "reward" and (bool(probes) or run_suites or bool(evals.get("verifiable")))
    engine = _vllm_engine(checkpoint, options, settings) if generates else None
    if engine is not None:
        # vLLM answers; the transformers model is loaded afterwards, only for log-prob scoring,
        # so the two never hold the device's memory at once.
        dtype = f"vllm:{engine.llm.llm_engine.model_config.dtype}"
        try:
            run = _answer(engine, tokenizer, checkpoint, probes, suites, run_suites, evals, settings, dtype,
                          out_dir, result)
        finally:
            engine.close()
            _release_memory()
    if engine is None or evals.get("preference"):
        model = load_model(checkpoint, options, kind=checkpoint.kind, dtype=inference_dtype(settings.precision))
        try:
            if engine is None:
                dtype = str(next(model.parameters()).dtype)
            if checkpoint.kind == "reward":
                if evals.get("preference"):
                    result["eval"]["preference"] = reward_model_accuracy(model, tokenizer, evals["preference"])
            else:
                if engine is None:
                    run = _answer(model, tokenizer, checkpoint, probes, suites, run_suites, evals, settings, dtype,
                                  out_dir, result)
                if evals.get("preference"):
                    result["eval"]["preference"] = _preference(
                        model, tokenizer, evals["preference"], checkpoint, reference, options, settings
                    )
        finally:
            # The pipeline goes on to train the next stage in this process: give the memory back.
            del model
            _release_memory()
    if run is not None and checkpoint.parent is not None:
        found = _regressions(checkpoint, run, suites, settings, options, dtype)
        if found is not None:
            result["regressions"] = found
    logger.debug("observed %s in %.1fs", checkpoint.stage, time.monotonic() - started)
    return result


def _answer(
    model: Any,
    tokenizer: Any,
    checkpoint: Checkpoint,
    probes: Sequence[Probe],
    suites: BehaviourConfig,
    run_suites: bool,
    evals: Mapping[str, Any],
    settings: GenerationSettings,
    dtype: str,
    out_dir: Path,
    result: dict[str, Any],
) -> BehaviourRun | None:
    """Everything of an observation that generates (probes, suites, verifiable problems), with a
    loaded transformers model or a vLLM generator; fills ``result`` and returns the suites' run."""
    from ladder.evaluate import verifiable_accuracy
    from ladder.metrics import behaviour
    from ladder.probes import run_probes

    run = None
    if probes:
        rows = run_probes(model, tokenizer, probes, settings)
        atomic_write_text(out_dir / PROBES_FILE, _jsonl(rows))
        gens = [Generation(r["answer"], r["num_tokens"], r["stopped"], r["finish_reason"]) for r in rows]
        result["behaviour"] = behaviour(gens)
    if run_suites:
        run = _behaviour_run(checkpoint, suites, settings, dtype, model, tokenizer)
        atomic_write_text(out_dir / BEHAVIOUR_FILE, _jsonl(run.rows))
        result["behaviour"].update(run.metrics)
    if evals.get("verifiable"):
        result["eval"]["verifiable"] = verifiable_accuracy(model, tokenizer, evals["verifiable"], settings)
    return run


def _vllm_engine(checkpoint: Checkpoint, options: Mapping[str, Any] | None, settings: GenerationSettings) -> Any:
    """ladder's vLLM backend for an observation's answers where ``generation.backend`` picks it
    (``auto``: where vLLM can run, :mod:`ladder.vllm_support`), else ``None`` (transformers).

    A chain of adapters (``merge: final``) has no weights at a path for vLLM to load. An engine
    that fails to start (memory, a model vLLM does not support) is logged and transformers answers.
    """
    if settings.backend == "transformers" or checkpoint.adapters:
        return None
    from ladder.generators import resolve_backend

    if resolve_backend(settings.backend) != "vllm":
        return None
    from ladder.vllm_generation import VLLMGenerator

    try:
        return VLLMGenerator(checkpoint, options, settings)
    except (LadderError, ImportError, OSError, RuntimeError, ValueError) as exc:
        logger.warning("vLLM could not start for %s (%s: %s); answering with transformers", checkpoint.stage,
                       type(exc).__name__, exc)
        return None


# Each checkpoint's answers to the behaviour suites, so that a stage is compared with its input
# checkpoint without loading and running that again: {(fingerprint, plan digest): run}. Bounded.
_RUNS: dict[tuple[str, str], BehaviourRun] = {}
_RUNS_MAX = 8


def _run_key(checkpoint: Checkpoint, suites: BehaviourConfig, settings: GenerationSettings, dtype: str) -> tuple[str, str]:
    from ladder.evals.runner import plan_digest

    return checkpoint.fingerprint, plan_digest(suites, settings, [dtype])


def _behaviour_run(
    checkpoint: Checkpoint,
    suites: BehaviourConfig,
    settings: GenerationSettings,
    dtype: str,
    model: Any,
    tokenizer: Any,
) -> BehaviourRun:
    from ladder.evals import run_behaviour

    key = _run_key(checkpoint, suites, settings, dtype)
    run = _RUNS.get(key) if checkpoint.fingerprint else None
    if run is not None:
        return run
    started = time.monotonic()
    run = run_behaviour(model, tokenizer, suites, settings)
    logger.info("behaviour suites of %s: %d answers in %.1f s", checkpoint.stage, len(run.rows),
                time.monotonic() - started)
    if checkpoint.fingerprint:
        if len(_RUNS) >= _RUNS_MAX:
            _RUNS.pop(next(iter(_RUNS)))
        _RUNS[key] = run
    return run


def _regressions(
    checkpoint: Checkpoint,
    run: BehaviourRun,
    suites: BehaviourConfig,
    settings: GenerationSettings,
    options: Mapping[str, Any] | None,
    dtype: str,
) -> list[dict[str, Any]] | None:
    """The suite metrics on which ``checkpoint`` is worse than its input checkpoint.

    The input's answers come from this process's cache when it was observed earlier (the
    pipeline observes every checkpoint before the stages that start from it), else the input
    is loaded and answers the same items once. ``None`` when there is nothing to compare with.
    """
    from ladder.evals import find_regressions
    from ladder.training.models import inference_dtype, load_model, load_tokenizer

    parent = checkpoint.parent
    if parent is None or parent.kind != "policy":
        return None
    before = _RUNS.get(_run_key(parent, suites, settings, dtype)) if parent.fingerprint else None
    if before is None and dtype.startswith("vllm:"):  # the parent answers through vLLM too
        engine = _vllm_engine(parent, options, settings)
        if engine is not None:
            try:
                before = _behaviour_run(parent, suites, settings, dtype, engine, engine.tokenizer)
            finally:
                engine.close()
                _release_memory()
    if before is None:
        try:
            tokenizer = load_tokenizer(parent, options)
            model = load_model(parent, options, dtype=inference_dtype(settings.precision))
        except (LadderError, OSError) as exc:
            logger.warning("could not load %s to compare %s with it: %s", parent.stage, checkpoint.stage, exc)
            return None
        try:
            before = _behaviour_run(parent, suites, settings, dtype, model, tokenizer)
        finally:
            del model
            _release_memory()
    return find_regressions(before.outcomes, run.outcomes, compared_to=parent.stage)


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
    """The model's own preference accuracy (summed and per token) and, against ``reference``,
    the implicit-reward diagnostic.

    The policy is scored once; the reference's scores come from this process's cache when the
    reference was observed earlier (the pipeline observes the base model first), else the
    reference is loaded and scored once.
    """
    from ladder.evaluate import own_preference, pair_logprobs, pair_scores, preference_summary
    from ladder.training.models import load_model

    scores, lengths = pair_scores(model, tokenizer, pairs, batch_size=settings.batch_size)
    where = (str(next(model.parameters()).dtype), _pairs_digest(pairs))
    _remember(checkpoint, where, scores)
    out = own_preference(scores, lengths)
    if reference is None or reference.fingerprint == checkpoint.fingerprint:
        # Against itself every implicit reward is exactly 0: a constant, not a measurement.
        return out
    ref_scores = _SCORES.get((reference.fingerprint, *where)) if reference.fingerprint else None
    if ref_scores is None:
        ref_model = load_model(reference, options, dtype=next(model.parameters()).dtype)
        try:
            ref_scores = pair_logprobs(ref_model, tokenizer, pairs, batch_size=settings.batch_size)
        finally:
            del ref_model
            _release_memory()
        _remember(reference, where, ref_scores)
    implicit = preference_summary(scores, ref_scores)
    out.update(implicit_accuracy=implicit["accuracy"], implicit_margin=implicit["margin"], reference=reference.stage)
    return out
