"""The :class:`Stage` protocol, the :class:`StageContext` a stage runs in, and its :class:`StageResult`.

A stage is anything with the members below; ladder's own SFT, DPO and GRPO are ordinary
implementations registered under the ``ladder.stages`` entry-point group, exactly as a third
party's would be. :class:`BaseStage` is an optional convenience (the constructor, pre-flight of
the shared settings, data loaded once); the training mechanics stages share are plain
functions in :mod:`ladder.sdk`, not methods of a base class.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from ladder.errors import LadderError
from ladder.layout import TRAINER_LOG
from ladder.configs import bind_config, config_to_dict, fingerprint_config
from ladder.settings import settings_problems

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = [
    "Stage",
    "StageContext",
    "StageResult",
    "BaseStage",
    "as_result",
    "bind_config",
    "config_to_dict",
    "fingerprint_config",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class StageResult:
    """What a stage's :meth:`~Stage.run` returns: the checkpoint it produced and its own metrics.

    Attributes:
        checkpoint: the new checkpoint; its paths lie in ``ctx.work_dir``.
        metrics: the stage's own numbers, by section: ``train`` (the training summary:
            steps, runtime, losses, tokens), ``stage_metrics`` (what the stage measured: data
            checks, merge check, held-out scores, rewards...) and, optionally, ``eval`` (held-out
            metrics the report shows beside the pipeline's evaluations). The pipeline writes
            them into the stage's ``metrics.json`` with the probes and evaluations it adds.
    """

    checkpoint: Checkpoint
    metrics: dict[str, Any] = attrs.field(factory=dict, converter=dict)


def as_result(value: Any) -> StageResult:
    """A :class:`StageResult` from what a stage returned (a bare :class:`Checkpoint` is accepted)."""
    if isinstance(value, StageResult):
        return value
    from ladder.checkpoint import Checkpoint

    if isinstance(value, Checkpoint):
        return StageResult(value)
    raise TypeError(f"a stage's run() must return a StageResult or a Checkpoint, got {type(value).__name__}")


@runtime_checkable
class Stage(Protocol):
    """What the pipeline needs of a stage.

    Attributes:
        kind: the registry name of the stage type (``"sft"``). Class attribute.
        Config: the ``attrs`` frozen config class. Class attribute. Field metadata says what the
            layers around the stage do with a setting (:mod:`ladder.settings`): ``data``
            (fingerprinted by content), ``path`` (resolved against a recipe's folder, its
            content fingerprinted), ``checkpoint_ref`` (another stage's checkpoint, checked in
            pre-flight and fingerprinted).
        name: this instance's name in the pipeline; unique; names its directory
            (``01-<name>``) and is what ``input=`` of later stages refers to.
        input: the name of the stage whose output this one starts from; ``None`` means the
            previous stage's output (the base model for the first stage).
        config: an instance of ``Config``, validated when the stage is constructed.
    """

    kind: ClassVar[str]
    Config: ClassVar[type]
    name: str
    input: str | None
    config: Any

    def validate(self, ctx: StageContext) -> list[str]:
        """Pre-flight, before anything trains. Called once per run, for every stage.

        May read: the config, the datasets it names (load and check every row), the base
        model's tokenizer when local (``ctx.checkpoints["base"]``). Must not write anything or
        train. Returns every problem found (an empty list when ready); never raises for a user
        error.
        """
        ...

    def fingerprint_data(self) -> Any:
        """JSON-able content identity of the stage's data (a hash), for the fingerprint."""
        ...

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> StageResult | Checkpoint:
        """Train from ``checkpoint`` and return what was produced.

        Runs after :meth:`validate` succeeded for the whole pipeline. Writes only below
        ``ctx.work_dir`` (the pipeline publishes it atomically as ``ctx.final_dir`` when
        ``run`` returns) and ``ctx.trainer_dir`` (resumable trainer checkpoints). Returns a
        :class:`StageResult` (the checkpoint and the stage's metrics; the pipeline writes
        ``metrics.json``), or a bare checkpoint. Paths in the returned checkpoint that lie in
        ``ctx.work_dir`` are relocated to ``ctx.final_dir`` on publication. Must not mutate
        ``checkpoint``. Under a multi-process launch every process calls it; only the main
        process's result is used.
        """
        ...


@attrs.frozen(kw_only=True)
class StageContext:
    """Everything a stage may use while it runs, built once by the pipeline (or a worker).

    Attributes:
        run_dir: the run's directory.
        work_dir: where the stage writes its artifacts (a temp dir, published on success).
        final_dir: where those artifacts will live once published.
        trainer_dir: where the trainer keeps resumable checkpoints (survives a crash).
        stage_name, stage_kind: the stage's pipeline name and registry kind.
        index, total: this stage's 1-based position and the number of stages.
        checkpoints: outputs of the stages that ran before, by stage name (and ``"base"``).
        seed: the run's seed.
        fingerprint: this stage's fingerprint.
        on_log: called with the trainer's log dicts (progress display, curves).
        options: run-wide settings (device, dtype, trust_remote_code, use_safetensors…).
        merge: the run's merge strategy: ``"every_stage"`` (publish a merged model per stage) or
            ``"final"`` (an adapter stage keeps only its adapter; one merge at the end).
    """

    run_dir: Path = attrs.field(converter=Path)
    work_dir: Path = attrs.field(converter=Path)
    final_dir: Path = attrs.field(converter=Path)
    trainer_dir: Path = attrs.field(converter=Path)
    stage_name: str = ""
    stage_kind: str = ""
    index: int = 1
    total: int = 1
    checkpoints: Mapping[str, Checkpoint] = attrs.field(factory=dict)
    seed: int = 0
    fingerprint: str = ""
    on_log: Callable[[dict[str, Any]], None] | None = attrs.field(default=None, eq=False)
    options: Mapping[str, Any] = attrs.field(factory=dict)
    merge: str = "every_stage"

    def log(self, record: dict[str, Any]) -> None:
        """Append a training log record to ``trainer_log.jsonl`` and forward it to ``on_log``."""
        record = {"time": time.time(), **record}
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.work_dir / TRAINER_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")
        if self.on_log is not None:
            try:
                self.on_log(record)
            except Exception:  # progress display must never break training
                logger.debug("on_log callback failed", exc_info=True)


def _json_default(o: Any) -> Any:
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def _stamp(value: Any) -> Any:
    """What identifies a data setting's current content cheaply: a file's size and mtime."""
    if isinstance(value, (str, os.PathLike)):
        try:
            st = os.stat(value)
        except OSError:
            return ("missing", os.fspath(value))
        return (os.fspath(value), st.st_size, st.st_mtime_ns)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _stamp(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Mapping)) for v in value) and len(value) < 50:
        return tuple(_stamp(v) for v in value)
    return ("object", id(value), len(value) if hasattr(value, "__len__") else None)


class BaseStage:
    """Convenience base for stages (optional for plugins).

    ``Stage(config=None, *, name=None, input=None, **settings)``: settings are the fields of
    ``Config`` and are validated here, when the stage is built, not when it runs.
    :meth:`validate` calls :meth:`check` (the stage's own pre-flight), adds the checks every
    stage's settings get (``trainer_kwargs`` against the TRL config) and names the stage in
    every problem. :meth:`cached` loads a dataset once per run.
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]
    input_kind: ClassVar[str] = "policy"
    output_kind: ClassVar[str] = "policy"

    def __init__(
        self,
        config: Any = None,
        /,
        *,
        name: str | None = None,
        input: str | None = None,
        **settings: Any,
    ) -> None:
        self.config = bind_config(self.Config, config, **settings)
        self.name = name or self.kind
        self.input = input
        self._cache: dict[str, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        extra = f", input={self.input!r}" if self.input else ""
        return f"{type(self).__name__}(name={self.name!r}{extra})"

    def check(self, ctx: StageContext) -> list[str]:
        """The stage's own pre-flight problems (override); may raise a :class:`LadderError`."""
        return []

    def validate(self, ctx: StageContext) -> list[str]:
        try:
            found = [str(p) for p in self.check(ctx)]
        except LadderError as exc:
            found = [str(exc)]
        found += settings_problems(self.config)
        return [f"stage {self.name!r}: {p}" for p in found]

    def fingerprint_data(self) -> Any:
        return None

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per content of the stage's data settings (a file edited between
        two runs of one pipeline object is read again)."""
        data = [getattr(self.config, f.name) for f in attrs.fields(type(self.config)) if f.metadata.get("data")]
        stamp = _stamp(data)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = compute()
        self._cache[key] = (stamp, value)
        return value

    def to_spec(self) -> dict[str, Any]:
        """The stage as plain data: registry kind + name + input + config (for workers)."""
        return {
            "stage": self.kind,
            "name": self.name,
            "input": self.input,
            "config": config_to_dict(self.config),
        }
