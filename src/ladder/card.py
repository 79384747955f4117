"""Model cards: the ``README.md`` beside a checkpoint and the one pushed to the Hugging Face hub.

A card opens with the hub's metadata header (``base_model``, ``datasets``, ``license``, ``tags``,
``pipeline_tag``, ``model-index`` with the held-out metrics) written by ``huggingface_hub``'s own
:class:`~huggingface_hub.ModelCardData`, then the lineage (base -> ... -> this stage) with each
stage's headline numbers and the stage's settings. It names no local path: a local base model,
dataset or file appears by its file name, and credentials are redacted.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["CardStage", "dataset_ids", "describe_source", "hub_id", "render_card", "scrub_paths"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
#: The metrics a stage's lineage line shows, by their path in ``metrics.json``.
HEADLINE = ("eval.verifiable.exact_match", "eval.verifiable.format_rate", "eval.preference.accuracy",
            "eval.rm_accuracy", "behaviour.mean_answer_tokens", "behaviour.stop_rate", "train.loss_last")


def hub_id(value: Any) -> str | None:
    """``value`` when it reads as a hub repository id (``org/name``, ``name``) and names no local
    file or folder; else ``None``.

    Example:
        >>> hub_id("Qwen/Qwen2.5-0.5B"), hub_id("/models/qwen"), hub_id("./data.jsonl")
        ('Qwen/Qwen2.5-0.5B', None, None)
    """
    if not isinstance(value, str) or not _HUB_ID.match(value) or os.path.exists(value):
        return None
    if value.endswith((".json", ".jsonl", ".parquet", ".csv", ".txt")):
        return None
    return value


def describe_source(value: Any) -> str:
    """A data or model source in words, without local paths: a hub id as it is, a local file or
    folder by its name, rows given in Python by their count."""
    from ladder.data.loading import PRESETS

    if isinstance(value, str):
        if value in PRESETS:
            return f"{PRESETS[value]['path']} (preset {value})"
        if hub_id(value):
            return value
        if value.startswith("<"):  # config_to_dict's summary of a long in-memory list
            return f"rows given in Python {value}"
        return f"local {'folder' if os.path.isdir(value) else 'file'} {os.path.basename(value.rstrip('/')) or value}"
    if isinstance(value, Mapping):
        if isinstance(value.get("mix"), list):
            return "mix of " + ", ".join(describe_source(part) for part in value["mix"])
        return describe_source(value.get("source", value.get("path")))
    if isinstance(value, (list, tuple)):
        return f"{len(value)} rows given in Python"
    return f"<{type(value).__name__}>"


def dataset_ids(value: Any) -> list[str]:
    """The hub datasets a dataset setting names (presets resolved; local data has none)."""
    from ladder.data.loading import PRESETS

    if isinstance(value, str):
        if value in PRESETS:
            return [str(PRESETS[value]["path"])]
        found = hub_id(value)
        return [found] if found and "/" in found else []
    if isinstance(value, Mapping):
        if isinstance(value.get("mix"), list):
            return [d for part in value["mix"] for d in dataset_ids(part)]
        return dataset_ids(value.get("source", value.get("path")))
    return []


def scrub_paths(value: Any) -> Any:
    """A copy of settings with local paths replaced by their file names (``<local sft.jsonl>``)."""
    if isinstance(value, Mapping):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and "\n" not in value and (os.path.isabs(value) or value.startswith(("~", "./", "../"))):
        return f"<local {os.path.basename(value.rstrip('/')) or 'path'}>"
    return value


@attrs.frozen(kw_only=True)
class CardStage:
    """One rung of the lineage a card lists.

    Attributes:
        name: the stage's name (``base`` for the base model).
        kind: its registry kind (``sft``...; ``base``).
        fingerprint: its fingerprint.
        source: for the base, the model in words (:func:`describe_source`).
        data: the stage's datasets in words.
        datasets: the hub datasets among them (the card's ``datasets`` metadata).
        metrics: its ``metrics.json`` (empty before observation).
        settings: its settings, datasets in words (:meth:`of_stage`).
    """

    name: str
    kind: str
    fingerprint: str = ""
    source: str = ""
    data: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def of_stage(cls, name: str, kind: str, fingerprint: str, config_cls: type | None, settings: Mapping[str, Any],
                 metrics: Mapping[str, Any] | None = None) -> CardStage:
        """A stage's rung: its ``data`` settings (by their field metadata) described and their hub ids."""
        fields = attrs.fields(config_cls) if config_cls is not None and attrs.has(config_cls) else ()
        data = {key: settings[key] for f in fields
                if f.metadata.get("data") and settings.get(key := f.alias or f.name) is not None}
        return cls(name=name, kind=kind, fingerprint=fingerprint, data=tuple(map(describe_source, data.values())),
                   datasets=tuple(d for v in data.values() for d in dataset_ids(v)), metrics=dict(metrics or {}),
                   settings={**settings, **{k: describe_source(v) for k, v in data.items()}})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _headline(metrics: Mapping[str, Any]) -> str:
    from ladder.report.metrics import flatten, format_value, spec_for

    flat = dict(flatten(metrics))
    parts = []
    for path in HEADLINE:
        value = flat.get(path)
        if _number(value):
            spec = spec_for(path, value)
            parts.append(f"{spec.label} {format_value(value, spec.unit)}")
    return ", ".join(parts)


def _eval_results(metrics: Mapping[str, Any], eval_sources: Mapping[str, Any]) -> list[Any]:
    """``model-index`` entries: every held-out number of the stage, by evaluation."""
    from huggingface_hub import EvalResult

    from ladder.report.metrics import spec_for

    results = []
    for kind, block in (metrics.get("eval") or {}).items():
        if not isinstance(block, Mapping):
            continue
        source = eval_sources.get(kind)
        ids = dataset_ids(source) if source is not None else []
        name = f"held-out {kind} set ({describe_source(source)})" if source is not None else f"held-out {kind} set"
        for key, value in block.items():
            if _number(value) and key != "n":
                results.append(EvalResult(
                    task_type="text-generation", dataset_type=ids[0] if ids else "custom", dataset_name=name,
                    metric_type=key, metric_value=float(value), metric_name=spec_for(f"eval.{kind}.{key}", value).label,
                ))
    return results


def render_card(
    lineage: Sequence[CardStage],
    *,
    title: str,
    base_model: str | None = None,
    license: str | None = None,
    kind: str = "policy",
    adapter: bool = False,
    eval_sources: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The card's text: the hub metadata header, the lineage with headline numbers, the settings.

    Args:
        lineage: base first, this stage last (its settings are listed, redacted and scrubbed of
            local paths).
        title: the card's heading (the repo id when pushed).
        base_model: the base model's hub id (``None`` for a local one).
        license: an SPDX id or hub license name, when known.
        kind: ``policy`` (text-generation) or ``reward`` (text-classification).
        adapter: whether the card describes a LoRA adapter (``library_name: peft``).
        eval_sources: the run's ``evals:`` datasets, which name the model-index entries.
        notes: paragraphs added after the introduction.
    """
    from huggingface_hub import ModelCardData

    from ladder.redaction import redact

    stage = lineage[-1]
    datasets = list(dict.fromkeys(d for node in lineage for d in node.datasets))
    data = ModelCardData(
        base_model=base_model,
        datasets=datasets or None,
        license=license,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-classification" if kind == "reward" else "text-generation",
        tags=list(dict.fromkeys(["ladder", "trl", "peft", *(n.kind for n in lineage[1:] if n.kind)])),
        model_name=title,
        eval_results=_eval_results(stage.metrics, eval_sources or {}) or None,
    )
    what = "a LoRA adapter" if adapter else ("a reward model" if kind == "reward" else "a merged model")
    lines = ["---", data.to_yaml(), "---", f"# {title}", "",
             f"{what[0].upper()}{what[1:]} trained by [ladder](https://github.com/ladder-ml/ladder): stage "
             f"`{stage.name}` ({stage.kind}), the last rung of the lineage below.", ""]
    lines += [note + "\n" for note in notes]
    lines += ["## Lineage", "", "| # | stage | kind | data | fingerprint | headline numbers |",
              "|---|---|---|---|---|---|"]
    for i, node in enumerate(lineage):
        data_text = node.source if node.kind == "base" else "; ".join(node.data)
        lines.append(f"| {i} | {node.name} | {node.kind or '-'} | {data_text or '-'} | `{node.fingerprint}` | "
                     f"{_headline(node.metrics) or '-'} |")
    body = json.dumps(scrub_paths(redact(dict(stage.settings))), indent=2, default=str)
    lines += ["", f"## Settings of `{stage.name}`", "", "```json", body, "```", ""]
    return "\n".join(lines)
