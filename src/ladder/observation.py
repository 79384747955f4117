"""Observing checkpoints for the pipeline: evaluation data, probes and evaluations, the base.

The pipeline observes the base model once (``00-base/``, reused while the probes, evaluations and
generation settings stay the same) and every stage's checkpoint before it publishes it; what
:func:`ladder.insight.observe` returns is merged into the stage's ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladder.atomic import atomic_dir, atomic_write_json, is_complete
from ladder.checkpoint import Checkpoint, fingerprint_of
from ladder.errors import ConfigError
from ladder.layout import BASE_DIR, COMPLETE, METRICS
from ladder.configs import config_to_dict

__all__ = ["Observation", "load_eval_rows", "merge_metrics", "read_metrics"]


def load_eval_rows(evals: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The recipe's ``evals:`` datasets, loaded and checked; raises the first bad row."""
    from ladder.data.loading import load_rows

    out: dict[str, list[dict[str, Any]]] = {}
    for key, spec in evals.items():
        if key == "behaviour":  # the behaviour suites' settings, not a dataset (ladder.evals)
            from ladder.evals import resolve_behaviour

            out[key] = resolve_behaviour(spec)  # type: ignore[assignment]
            continue
        rows, label = load_rows(spec)
        if key == "preference":
            from ladder.data.preference import normalize_preference_rows

            out[key], problems = normalize_preference_rows(rows, label)
        elif key == "verifiable":
            from ladder.data.verifiable import normalize_verifiable_rows

            out[key], problems = normalize_verifiable_rows(rows, label)
        else:
            raise ConfigError(f"unknown evaluation {key!r}; use 'preference', 'verifiable' or 'behaviour'")
        if problems:
            raise problems[0]
    return out


class Observation:
    """How a run observes checkpoints: its probes, evaluation data, decoding and loading options."""

    def __init__(self, *, probes: Any, evals: Mapping[str, Any], eval_rows: Mapping[str, Any],
                 generation: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        self.probes = probes
        self.evals = dict(evals)
        self.eval_rows = dict(eval_rows)
        self.generation = dict(generation)
        self.options = dict(options)

    @property
    def enabled(self) -> bool:
        return self.probes is not False

    def observe(self, checkpoint: Checkpoint, out_dir: Path) -> dict[str, Any]:
        """Probe and evaluate ``checkpoint`` (writes ``out_dir/probes.jsonl``); preference
        accuracy is measured against the base model of its lineage."""
        from ladder.generation import GenerationSettings
        from ladder.insight import observe
        from ladder.probes import resolve_probes

        settings = GenerationSettings(**self.generation)
        base = next(iter(reversed(list(checkpoint.lineage()))))
        return observe(checkpoint, out_dir, probes=resolve_probes(self.probes), evals=self.eval_rows,
                       settings=settings, options=self.options, reference=base)

    def base(self, base: Checkpoint, run_dir: Path) -> dict[str, Any] | None:
        """The base model's metrics, observed into ``run_dir/00-base`` unless already there."""
        if not self.enabled:
            return None
        base_dir = run_dir / BASE_DIR
        fp = fingerprint_of(base.fingerprint, repr(self.probes), self.evals and config_to_dict(self.evals),
                            self.generation)
        if is_complete(base_dir):
            try:
                if json.loads((base_dir / COMPLETE).read_text()).get("fingerprint") == fp:
                    return read_metrics(base_dir)
            except (OSError, ValueError):
                pass
        with atomic_dir(base_dir, replace=True, info={"fingerprint": fp}) as work:
            metrics = {"stage": "base", "kind": "base", "index": 0, **self.observe(base, work)}
            atomic_write_json(work / METRICS, metrics)
        return metrics


def merge_metrics(metrics: dict[str, Any], observed: Mapping[str, Any]) -> None:
    """Add the probes' and evaluations' sections to a stage's metrics, keeping the stage's own
    keys in a shared section (a reward stage's ``eval.rm_accuracy`` beside ``eval.preference``)."""
    for key, value in observed.items():
        if isinstance(value, Mapping) and isinstance(metrics.get(key), Mapping):
            metrics[key] = {**metrics[key], **value}
        else:
            metrics[key] = value


def read_metrics(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
