"""A stage as plain data: the ``SPEC.json`` a stage worker rebuilds and runs it from.

The spec holds the stage as its registry kind, name, input and config dict, the input checkpoint
(with its lineage) and the stage context. Nothing is pickled: the worker imports the stage class
from the ``ladder.stages`` registry and calls ``Class(name=..., input=..., **config)``, exactly as
a recipe does, so a worker only needs the same packages installed (ladder and any stage/reward
plugins), not the caller's objects.

No credential is written into a spec: :func:`seal_spec` replaces each one (a setting named like
one, ``options.hf_token``, a token-shaped string, the password in a URL: whatever
:func:`ladder.redaction.redact` hides) by a placeholder and returns the values as environment
variables for the worker, whose :func:`unseal_spec` puts them back. ``options.hf_token`` is
also given to the worker as ``HF_TOKEN``, which the Hugging Face libraries read themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.atomic import atomic_write_text
from ladder.errors import ConfigError
from ladder.layout import executor_dir

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext

__all__ = [
    "ERROR_NAME",
    "RESULT_NAME",
    "SPEC_VERSION",
    "checkpoint_chain",
    "checkpoint_from_chain",
    "context_from_spec",
    "seal_spec",
    "unseal_spec",
    "stage_from_spec",
    "stage_spec",
    "worker_spec_paths",
]

SPEC_VERSION = 1
#: In-memory datasets longer than this are written to a JSONL file (``config_to_dict`` would
#: summarise them as ``"<N items>"``, which cannot rebuild the stage).
INLINE_ROWS_LIMIT = 50
RESULT_NAME = "RESULT.json"
ERROR_NAME = "ERROR.json"
#: Environment variables carrying a spec's secrets to its worker: LADDER_SECRET_0, ...
SECRET_ENV_PREFIX = "LADDER_SECRET_"
_PLACEHOLDER = re.compile(r"@@(LADDER_SECRET_\d+)@@")


def worker_spec_paths(run_dir: str | os.PathLike[str], stage_name: str, fingerprint: str) -> tuple[Path, Path]:
    """Where one stage run's ``SPEC.json`` and ``RESULT.json`` live: ``<run_dir>/.executor/<stage>-<fp>/``."""
    job = executor_dir(run_dir, stage_name, fingerprint)
    return job / "SPEC.json", job / RESULT_NAME


# ------------------------------------------------------------------------------------------------
# checkpoints as plain data


def checkpoint_chain(checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """``checkpoint`` and its ancestors as ``to_dict()`` values, newest first.

    ``to_dict`` refers to the parent by fingerprint only; the chain carries every ancestor, so
    :func:`checkpoint_from_chain` rebuilds the same lineage (which the model card lists).
    """
    chain = []
    for node in checkpoint.lineage():
        data = node.to_dict()
        data["chat_template"] = node.chat_template  # not part of to_dict(); keep it exact
        chain.append(data)
    return chain


def checkpoint_from_chain(chain: Sequence[Mapping[str, Any]]) -> Checkpoint:
    """The checkpoint :func:`checkpoint_chain` described, with its parents reattached."""
    from ladder.checkpoint import Checkpoint

    if not chain:
        raise ConfigError("the stage spec holds no input checkpoint")
    node: Checkpoint | None = None
    for data in reversed(list(chain)):
        node = Checkpoint.from_dict(dict(data), parent=node)
        if data.get("chat_template") is not None:
            node = attrs.evolve(node, chat_template=data["chat_template"])
    assert node is not None
    return node


# ------------------------------------------------------------------------------------------------
# writing a spec


def _is_dataset_object(value: Any) -> bool:
    # A datasets.Dataset, recognised without importing `datasets`.
    return type(value).__module__.split(".")[0] == "datasets" and hasattr(value, "to_list")


def _is_rows(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(row, Mapping) for row in value)
    )


class _SpecWriter:
    """Turns a stage config into JSON the stage's constructor accepts, writing datasets to files."""

    def __init__(self, stage_name: str, data_dir: Path) -> None:
        self.stage_name = stage_name
        self.data_dir = data_dir
        self.materialised: list[str] = []  # dotted paths of values written to files

    def config(self, config: Any) -> dict[str, Any]:
        if not attrs.has(type(config)):
            raise ConfigError(
                f"stage {self.stage_name!r}: its config is a {type(config).__name__}, not an attrs class; "
                f"a worker rebuilds a stage from its config's fields. Use an @attrs.frozen config."
            )
        return self._attrs(config, "")

    def _attrs(self, value: Any, where: str) -> dict[str, Any]:
        out = {}
        for field in attrs.fields(type(value)):
            key = field.alias or field.name  # what the constructor takes
            out[key] = self.value(getattr(value, field.name), f"{where}{key}")
        return out

    def _materialise(self, rows: Sequence[Mapping[str, Any]], where: str) -> str:
        lines = []
        for i, row in enumerate(rows):
            try:
                lines.append(json.dumps(dict(row), ensure_ascii=False))
            except TypeError as exc:
                raise ConfigError(
                    f"stage {self.stage_name!r}: `{where}` row {i} cannot be written as JSON for the "
                    f"worker ({exc}); keep rows to str/int/float/bool/list/dict values, give the data "
                    f"as a file, or run this stage with executor: local"
                ) from exc
        text = "".join(line + "\n" for line in lines)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        # Named by content: a re-run (or another stage with the same rows) reuses the file.
        path = self.data_dir / f"{self.stage_name}-{where.replace('.', '-')}-{digest}.jsonl"
        if not path.is_file():
            atomic_write_text(path, text)
        self.materialised.append(where)
        return str(path)

    def value(self, value: Any, where: str) -> Any:
        if _is_dataset_object(value):
            return self._materialise(value.to_list(), where)
        if _is_rows(value) and len(value) > INLINE_ROWS_LIMIT:
            return self._materialise(value, where)
        if attrs.has(type(value)):
            return self._attrs(value, f"{where}.")
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ConfigError(
                        f"stage {self.stage_name!r}: `{where}` has a {type(k).__name__} key {k!r}; "
                        f"keys must be strings to be sent to a worker"
                    )
                out[k] = self.value(v, f"{where}.{k}")
            return out
        if isinstance(value, (list, tuple)):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if callable(value):
            name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
            raise ConfigError(
                f"stage {self.stage_name!r}: `{where}` is a Python function ({name}), which cannot be "
                f"sent to a worker process. Register it under a name (a `ladder.rewards` entry point "
                f"in an installed package, see docs/writing-a-reward.md) and give the name instead, "
                f"or run this stage with executor: local"
            )
        raise ConfigError(
            f"stage {self.stage_name!r}: `{where}` is a {type(value).__name__}, which cannot be sent "
            f"to a worker process; give plain values (str, numbers, lists, mappings) or a file path, "
            f"or run this stage with executor: local"
        )


def stage_spec(
    stage: Stage, checkpoint: Checkpoint, ctx: StageContext, *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The plain-data spec a worker runs ``stage`` from (see the module docstring).

    In-memory datasets of more than 50 rows and ``datasets.Dataset`` objects are written to
    JSONL files in ``data_dir`` (default ``<run_dir>/.executor/data``, named by content, kept
    with the run) and passed by path; rows hash the same from a file as from a list, so the
    stage's fingerprint does not change.

    Raises:
        ConfigError: the stage cannot be sent to another process: it is registered in-process
            only, or its config holds a function or another object that is not plain data, or
            the config does not rebuild into the same settings.
    """
    from ladder.registry import stages as stage_registry
    from ladder.configs import fingerprint_config

    kind = getattr(stage, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"stage {stage.name!r} has no registry `kind`; a worker cannot rebuild it")
    entry = stage_registry.entry(kind)
    if entry.entry_point is None:
        raise ConfigError(
            f"stage {stage.name!r}: its type {kind!r} is registered in this process only "
            f"(registry.stages.register), so a worker process cannot import it. Install it as a "
            f"package with a `ladder.stages` entry point (see docs/writing-a-stage.md), or run it "
            f"with executor: local"
        )
    writer = _SpecWriter(stage.name, Path(data_dir) if data_dir is not None else Path(ctx.run_dir) / ".executor" / "data")
    config = writer.config(stage.config)

    # The config must rebuild into the same settings, or the worker would train something else
    # under this stage's fingerprint. Fields that now name a written file are compared by content
    # through the fingerprint's data hash instead.
    rebuilt = stage_registry.get(kind)(name=stage.name, input=stage.input, **config)
    changed_fields = {w.split(".")[0].split("[")[0] for w in writer.materialised}
    before = {k: v for k, v in fingerprint_config(stage.config).items() if k not in changed_fields}
    after = {k: v for k, v in fingerprint_config(rebuilt.config).items() if k not in changed_fields}
    if before != after:
        differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        raise ConfigError(
            f"stage {stage.name!r}: the settings {', '.join(differ)} do not survive being written as "
            f"plain data for a worker (their config converter loses information); run this stage "
            f"with executor: local, or fix the config class so its fields round-trip"
        )

    return {
        "version": SPEC_VERSION,
        "stage": kind,
        "name": stage.name,
        "input": stage.input,
        "config": config,
        "checkpoint": checkpoint_chain(checkpoint),
        "context": {
            "run_dir": str(ctx.run_dir),
            "work_dir": str(ctx.work_dir),
            "final_dir": str(ctx.final_dir),
            "trainer_dir": str(ctx.trainer_dir),
            "stage_name": ctx.stage_name or stage.name,
            "stage_kind": ctx.stage_kind or kind,
            "index": ctx.index,
            "total": ctx.total,
            "seed": ctx.seed,
            "fingerprint": ctx.fingerprint,
            "options": _plain(dict(ctx.options), "options"),
            "merge": getattr(ctx, "merge", "every_stage"),
            "checkpoints": {name: checkpoint_chain(c) for name, c in ctx.checkpoints.items()},
        },
    }


def _plain(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run {where} must be plain JSON values to be sent to a worker: {exc}") from exc


def seal_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(spec with every secret replaced by a placeholder, the environment that carries them)``.

    Write the first to disk and give the second to the worker's process (see the module docs).

    Example:
        >>> sealed, env = seal_spec({"context": {"options": {"hf_token": "hf_" + "x" * 30}}})
        >>> sealed["context"]["options"]["hf_token"], sorted(env)
        ('@@LADDER_SECRET_0@@', ['HF_TOKEN', 'LADDER_SECRET_0'])
    """
    from ladder.redaction import redact

    env: dict[str, str] = {}
    names: dict[str, str] = {}

    def placeholder(secret: str) -> str:
        if secret not in names:
            names[secret] = f"{SECRET_ENV_PREFIX}{len(names)}"
            env[names[secret]] = secret
        return f"@@{names[secret]}@@"

    sealed = redact(dict(spec), mask=placeholder)
    token = ((spec.get("context") or {}).get("options") or {}).get("hf_token")
    if isinstance(token, str) and token:
        env["HF_TOKEN"] = token
    return sealed, env


def unseal_spec(spec: Any, environ: Mapping[str, str] | None = None) -> Any:
    """The spec :func:`seal_spec` sealed, its secrets read back from ``environ`` (default: this process's).

    Raises:
        ConfigError: a placeholder whose variable the environment lacks.
    """
    environ = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(
                f"the stage spec refers to the secret {name}, which this worker's environment lacks; the "
                f"process that starts the worker must pass the environment seal_spec() returned"
            )
        return environ[name]

    if isinstance(spec, Mapping):
        return {k: unseal_spec(v, environ) for k, v in spec.items()}
    if isinstance(spec, list):
        return [unseal_spec(v, environ) for v in spec]
    if isinstance(spec, str) and "@@" in spec:
        return _PLACEHOLDER.sub(value, spec)
    return spec


# ------------------------------------------------------------------------------------------------
# reading a spec


def stage_from_spec(spec: Mapping[str, Any]) -> Stage:
    """Rebuild the stage: ``registry.stages.get(kind)(name=..., input=..., **config)``."""
    from ladder.registry import stages as stage_registry

    if spec.get("version", SPEC_VERSION) != SPEC_VERSION:
        raise ConfigError(
            f"stage spec version {spec.get('version')} is not supported by this ladder "
            f"(expects {SPEC_VERSION}); install the same ladder version on both sides"
        )
    cls = stage_registry.get(spec["stage"])
    return cls(name=spec["name"], input=spec.get("input"), **dict(spec.get("config") or {}))


def context_from_spec(spec: Mapping[str, Any]) -> StageContext:
    """The :class:`~ladder.stage.StageContext` the spec describes (no ``on_log`` callback)."""
    from ladder.stage import StageContext

    c = spec["context"]
    return StageContext(
        run_dir=Path(c["run_dir"]),
        work_dir=Path(c["work_dir"]),
        final_dir=Path(c["final_dir"]),
        trainer_dir=Path(c["trainer_dir"]),
        stage_name=str(c.get("stage_name") or spec.get("name") or ""),
        stage_kind=str(c.get("stage_kind") or spec.get("stage") or ""),
        index=int(c.get("index", 1)),
        total=int(c.get("total", 1)),
        seed=int(c.get("seed", 0)),
        fingerprint=str(c.get("fingerprint", "")),
        options=dict(c.get("options") or {}),
        merge=str(c.get("merge") or "every_stage"),
        checkpoints={name: checkpoint_from_chain(chain) for name, chain in (c.get("checkpoints") or {}).items()},
    )
