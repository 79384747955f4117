"""The :class:`Stage` protocol and the :class:`StageContext` a stage runs in.

A stage is anything with the members below; ladder's own SFT, DPO and GRPO are ordinary
implementations registered under the ``ladder.stages`` entry-point group, exactly as a third
party's would be. :class:`BaseStage` is an optional convenience for the constructor
(``SFT(dataset=..., name="sft", input=None)``); the training mechanics stages share are plain
functions in :mod:`ladder.training`, not methods of a base class.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["Stage", "StageContext", "BaseStage", "bind_config", "config_to_dict", "fingerprint_config"]

logger = logging.getLogger(__name__)


@runtime_checkable
class Stage(Protocol):
    """What the pipeline needs of a stage.

    Attributes:
        kind: the registry name of the stage type (``"sft"``). Class attribute.
        Config: the ``attrs`` frozen config class. Class attribute.
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

        May read: the config, the datasets it names (load and check every row), the input
        checkpoint's tokenizer when local. Must not write anything or train. Returns every
        problem found (an empty list when ready); never raises for a user error.
        """
        ...

    def fingerprint_data(self) -> Any:
        """JSON-able content identity of the stage's data (a hash), for the fingerprint."""
        ...

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        """Train from ``checkpoint`` and return the new checkpoint.

        Runs after :meth:`validate` succeeded for the whole pipeline. Writes only below
        ``ctx.work_dir`` (the pipeline publishes it atomically as ``ctx.final_dir`` when
        ``run`` returns) and ``ctx.trainer_dir`` (resumable trainer checkpoints). Paths in the
        returned checkpoint that lie in ``ctx.work_dir`` are relocated to ``ctx.final_dir``
        on publication. Must not mutate ``checkpoint``.
        """
        ...


@attrs.define(kw_only=True)
class StageContext:
    """Everything a stage may use while it runs, handed over by the pipeline.

    Attributes:
        run_dir: the run's directory.
        work_dir: where the stage writes its artifacts (a temp dir, published on success).
        final_dir: where those artifacts will live once published.
        trainer_dir: where the trainer keeps resumable checkpoints (survives a crash).
        index, total: this stage's 1-based position and the number of stages.
        checkpoints: outputs of the stages that ran before, by stage name (and ``"base"``).
        seed: the run's seed.
        fingerprint: this stage's fingerprint.
        on_log: called with the trainer's log dicts (progress display, curves).
        options: run-wide settings (device, dtype, trust_remote_code, use_safetensors…).
    """

    run_dir: Path
    work_dir: Path
    final_dir: Path
    trainer_dir: Path
    index: int = 1
    total: int = 1
    checkpoints: Mapping[str, Checkpoint] = attrs.field(factory=dict)
    seed: int = 0
    fingerprint: str = ""
    on_log: Callable[[dict[str, Any]], None] | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def log(self, record: dict[str, Any]) -> None:
        """Append a training log record to ``trainer_log.jsonl`` and forward it to ``on_log``."""
        record = {"time": time.time(), **record}
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.work_dir / "trainer_log.jsonl", "a", encoding="utf-8") as f:
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


def bind_config(config_cls: type, config: Any = None, /, **kwargs: Any) -> Any:
    """Build a ``config_cls`` from an instance, a mapping, or keyword arguments.

    Unknown keys and invalid values raise :class:`ConfigError` naming the config and the key.
    """
    if isinstance(config, config_cls):
        if kwargs:
            return attrs.evolve(config, **kwargs)
        return config
    values: dict[str, Any] = {}
    if config is not None:
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"{config_cls.__name__}: expected a {config_cls.__name__} or a mapping, "
                f"got {type(config).__name__}"
            )
        values.update(config)
    values.update(kwargs)
    known = {f.alias if f.alias else f.name for f in attrs.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{config_cls.__name__}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known settings: {', '.join(sorted(known))}"
        )
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {_setting_problem(config_cls, values) or exc}") from exc


def _setting_problem(config_cls: type, values: Mapping[str, Any]) -> str | None:
    """Which given setting makes the config fail, and why, in words (attrs' own messages often
    name no setting: "'>' not supported between instances of 'str' and 'int'")."""
    for f in attrs.fields(config_cls):
        key = f.alias or f.name
        if key not in values:
            continue
        value = values[key]
        try:
            if callable(f.converter):
                value = f.converter(value)
            if f.validator is not None:
                f.validator(None, f, value)
        except (TypeError, ValueError) as exc:
            given = values[key]
            args = exc.args
            got = f"; got {given!r} ({type(given).__name__})"
            if len(args) == 4 and isinstance(args[2], type):  # attrs.validators.instance_of
                return f"setting {key!r} must be {args[2].__name__}{got}"
            if isinstance(exc, ValueError):  # attrs' in_/gt/ge name the setting and the value
                message = args[0] if args and isinstance(args[0], str) else str(exc)
                return message if message.startswith(f"'{key}'") else f"setting {key!r}: {message}"
            return f"setting {key!r} has the wrong type{got}"
    return None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of an attrs config (callables and datasets become descriptions)."""

    def convert(value: Any) -> Any:
        if attrs.has(type(value)):
            return {k: convert(v) for k, v in attrs.asdict(value, recurse=False).items()}
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if len(value) > 50:  # in-memory datasets: their hash is fingerprinted instead
                return f"<{len(value)} items>"
            return [convert(v) for v in value]
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, Path):
            return str(value)
        if callable(value):
            mod = getattr(value, "__module__", "?")
            return f"<callable {mod}.{getattr(value, '__qualname__', repr(value))}>"
        return f"<{type(value).__name__}>"

    return convert(config)


def fingerprint_config(config: Any) -> dict[str, Any]:
    """The config as fingerprinted: fields marked ``metadata={"data": True}`` (datasets) are left
    out, since the stage's :meth:`~Stage.fingerprint_data` covers their *content* — the same rows
    from a list or from a file give the same fingerprint."""
    data = config_to_dict(config)
    if attrs.has(type(config)):
        for f in attrs.fields(type(config)):
            if f.metadata.get("data"):
                data.pop(f.name, None)
    return data


class BaseStage:
    """Convenience constructor shared by ladder's stages (optional for plugins).

    ``Stage(config=None, *, name=None, input=None, **settings)``: settings are the fields of
    ``Config`` and are validated here, when the stage is built, not when it runs.
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]

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

    def __repr__(self) -> str:
        extra = f", input={self.input!r}" if self.input else ""
        return f"{type(self).__name__}(name={self.name!r}{extra})"

    def validate(self, ctx: StageContext) -> list[str]:
        return []

    def fingerprint_data(self) -> Any:
        return None

    def to_spec(self) -> dict[str, Any]:
        """The stage as plain data: registry kind + name + input + config (for workers)."""
        return {
            "stage": self.kind,
            "name": self.name,
            "input": self.input,
            "config": config_to_dict(self.config),
        }
