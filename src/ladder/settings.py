"""Stage settings that describe themselves, and the training settings every stage shares.

A stage's config is an ``attrs`` frozen class. Its fields carry their help text and, where it
matters to the layers around the stage, what kind of value they hold, in field metadata:

- ``data=True``: a dataset. The stage fingerprints its *content* (``fingerprint_data``), so the
  field itself is left out of the config fingerprint; a recipe resolves a relative file path in
  it against the recipe's folder.
- ``path="file" | "dir" | "any"``: a local path. A recipe resolves it against its folder; the
  pipeline adds the content identity of what it names to the stage's fingerprint, so replacing
  the file re-trains the stage.
- ``path="text"``: text that may be given as a file (``chat_template: templates/chatml.jinja``):
  a recipe reads a value that names a ``.jinja``/``.j2``/``.txt`` file into the setting, and a
  value that looks like such a file but does not exist is an error.
- ``checkpoint_ref="reward" | "policy"``: the name of an earlier stage whose checkpoint (of that
  kind) the stage uses besides its input, or a checkpoint folder written as a path (``./rm``).
  The pipeline checks the reference in pre-flight (an earlier stage, of that kind) and puts
  that checkpoint's fingerprint into the stage's.

:func:`setting` builds such a field; :class:`TrainingSettings` holds the fields every training
stage shares, declared once; a stage's config extends it and re-tunes defaults with
:func:`training_default`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import attrs

from ladder.configs import bind_config, config_to_dict, describe_settings, fingerprint_config

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "FINETUNING",
    "PATH_KINDS",
    "LoraSettings",
    "TrainingSettings",
    "setting",
    "training_default",
    "bind_config",
    "config_to_dict",
    "fingerprint_config",
    "path_settings",
    "checkpoint_references",
    "is_path_reference",
    "path_problems",
    "settings_problems",
    "trainer_kwargs_problems",
    "describe_settings",
]

PATH_KINDS = ("file", "dir", "any", "text")
#: A ``path="text"`` setting whose value ends with one of these names a file to read.
TEXT_FILE_SUFFIXES = (".jinja", ".j2", ".jinja2", ".txt", ".md")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
#: ``lora``: an adapter on the 16-bit (or fp32) weights; ``full``: every weight; ``qlora``: an
#: adapter on a 4-bit NF4 copy of the weights (bitsandbytes, CUDA), merged onto the 16-bit weights.
FINETUNING = ("lora", "full", "qlora")
#: The attention implementations ``from_pretrained`` accepts for training (transformers 5); a hub
#: kernel repository (``kernels-community/flash-attn2``) is accepted too.
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4",
                        "flex_attention")
_NOTHING = attrs.NOTHING


def setting(
    default: Any = _NOTHING,
    *,
    help: str,
    choices: tuple[Any, ...] | None = None,
    validator: Any = None,
    converter: Any = None,
    factory: Any = None,
    data: bool = False,
    path: str | None = None,
    checkpoint_ref: str | None = None,
) -> Any:
    """An ``attrs`` field with its help text and what kind of value it holds (see the module docs).

    ``choices`` is short for ``validator=attrs.validators.in_(choices)``.

    Example:
        >>> import attrs
        >>> @attrs.frozen(kw_only=True)
        ... class MyConfig:
        ...     corpus: str = setting(help="the text to train on", data=True)
        ...     glossary: str | None = setting(None, help="a terms file", path="file")
        >>> [f.metadata.get("path") for f in attrs.fields(MyConfig)]
        [None, 'file']
    """
    if path is not None and path not in PATH_KINDS:
        raise ValueError(f"path must be one of {PATH_KINDS}, got {path!r}")
    if checkpoint_ref is not None and checkpoint_ref not in ("policy", "reward"):
        raise ValueError(f"checkpoint_ref must be 'policy' or 'reward', got {checkpoint_ref!r}")
    if choices is not None:
        if validator is not None:
            raise ValueError("give choices or a validator, not both")
        validator = attrs.validators.in_(choices)
    metadata: dict[str, Any] = {"help": help}
    if data:
        metadata["data"] = True
    if path is not None:
        metadata["path"] = path
    if checkpoint_ref is not None:
        metadata["checkpoint_ref"] = checkpoint_ref
    if path == "text" and converter is None:
        converter = text_or_file
    kwargs: dict[str, Any] = {"metadata": metadata, "validator": validator, "converter": converter}
    if factory is not None:
        kwargs["factory"] = factory
    elif default is not _NOTHING:
        kwargs["default"] = default
    return attrs.field(**kwargs)


def looks_like_text_file(value: Any) -> bool:
    """Whether a text setting's value is a file name (one line ending in .jinja, .j2, .txt...)."""
    return isinstance(value, str) and "\n" not in value and value.endswith(TEXT_FILE_SUFFIXES)


def text_or_file(value: Any) -> Any:
    """The converter of ``path="text"`` settings: an existing file's name becomes its text."""
    if looks_like_text_file(value) and os.path.isfile(os.path.expanduser(value)):
        with open(os.path.expanduser(value), encoding="utf-8") as f:
            return f.read()
    return value


def _targets(value: Any) -> Any:
    if isinstance(value, str):
        return value if value == "all-linear" else [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


@attrs.frozen(kw_only=True)
class LoraSettings:
    """LoRA hyper-parameters (defaults: the reference recipe, r=8 on q_proj,v_proj)."""

    r: int = setting(8, validator=attrs.validators.ge(1), help="LoRA rank")
    alpha: int = setting(16, validator=attrs.validators.ge(1), help="LoRA alpha")
    dropout: float = setting(
        0.05, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)], help="dropout on the LoRA path"
    )
    target_modules: Any = setting(
        ("q_proj", "v_proj"), converter=_targets, help='module names, a comma-separated string, or "all-linear"'
    )
    modules_to_save: tuple[str, ...] = setting(
        (), converter=tuple, help="modules trained fully and saved (e.g. embed_tokens, lm_head)"
    )
    use_dora: bool = setting(
        False, validator=attrs.validators.instance_of(bool),
        help="DoRA: a learned magnitude per output beside the low-rank direction (slower steps, often closer to "
        "full fine-tuning)",
    )
    use_rslora: bool = setting(
        False, validator=attrs.validators.instance_of(bool),
        help="rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r (keeps high ranks learning)",
    )


def _lora(value: Any) -> LoraSettings:
    return value if isinstance(value, LoraSettings) else LoraSettings(**dict(value or {}))


def _int_steps(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{attribute.name}' must be int", attribute, int, value)
    if value == 0 or value < -1:
        raise ValueError(f"'{attribute.name}' must be a positive number of steps, or -1 to use epochs; got {value}")


_gt0 = attrs.validators.gt(0)


def _attn_implementation(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None or value in ATTN_IMPLEMENTATIONS:
        return
    if isinstance(value, str) and value.count("/") == 1 and all(value.split("/")):  # a hub kernel repository
        return
    raise ValueError(
        f"'{attribute.name}' must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, a hub kernel repository "
        f"(org/name), or null for the model's default; got {value!r}"
    )


@attrs.frozen(kw_only=True)
class TrainingSettings:
    """The settings every training stage shares, with their checks and help, declared once.

    A stage's config extends it (``@attrs.frozen(kw_only=True) class MyStageConfig(TrainingSettings)``)
    and sets ``trl_config`` to the name of the TRL config class its trainer takes, against which
    ``trainer_kwargs`` is checked in pre-flight. :func:`training_default` gives a field another
    default for one stage without repeating its checks.
    """

    #: The ``trl`` config class the stage builds (``"SFTConfig"``); ``trainer_kwargs`` keys must be its fields.
    trl_config: ClassVar[str] = ""

    finetuning: str = setting(
        "lora", choices=FINETUNING,
        help="lora (train an adapter), full (train every weight) or qlora (an adapter on a 4-bit NF4 copy of "
        "the weights; needs a CUDA GPU and bitsandbytes)",
    )
    lora: LoraSettings = setting(
        factory=LoraSettings, converter=_lora,
        help="LoRA settings: r, alpha, dropout, target_modules, modules_to_save, use_dora, use_rslora",
    )
    attn_implementation: str | None = setting(
        None, validator=_attn_implementation,
        help="attention kernel the model loads with: eager, sdpa, flash_attention_2/3/4 (CUDA, flash-attn), "
        "flex_attention, or a hub kernel (org/name); null: the model's default",
    )
    use_liger_kernel: bool = setting(
        False, validator=attrs.validators.instance_of(bool),
        help="Liger's Triton kernels for the model's layers (CUDA, pip install liger-kernel)",
    )
    learning_rate: float = setting(2e-4, validator=_gt0, help="peak learning rate")
    num_train_epochs: float = setting(1.0, validator=_gt0, help="epochs over the data")
    max_steps: int = setting(-1, validator=_int_steps, help="stop after N optimizer steps (-1: use epochs)")
    per_device_train_batch_size: int = setting(4, validator=_gt0, help="rows per device per micro-batch")
    gradient_accumulation_steps: int = setting(1, validator=_gt0, help="micro-batches per optimizer step")
    precision: str = setting(
        "auto", choices=PRECISIONS,
        help="auto: bf16 on GPUs that support it, fp32 on CPU; bf16 on a CPU autocasts where it has native bf16",
    )
    save_steps: int = setting(
        50, validator=attrs.validators.ge(0), help="resumable trainer checkpoint every N steps (0: none)"
    )
    trainer_kwargs: dict[str, Any] = setting(
        factory=dict, converter=dict, help="passed through to the stage's TRL config (checked against its fields)"
    )


def training_default(name: str, default: Any, *, help: str | None = None, of: type = TrainingSettings) -> Any:
    """A :class:`TrainingSettings` field (or one of the config class ``of``) with another default
    (and help), its checks kept.

    Example:
        >>> import attrs
        >>> @attrs.frozen(kw_only=True)
        ... class SlowConfig(TrainingSettings):
        ...     learning_rate: float = training_default("learning_rate", 5e-6)
        >>> SlowConfig().learning_rate, SlowConfig(learning_rate=1e-3).learning_rate
        (5e-06, 0.001)
    """
    base = attrs.fields_dict(of)[name]
    metadata = {**base.metadata, **({"help": help} if help else {})}
    return attrs.field(default=default, validator=base.validator, converter=base.converter, metadata=metadata)


def _fields(config_or_cls: Any) -> tuple[attrs.Attribute, ...]:
    cls = config_or_cls if isinstance(config_or_cls, type) else type(config_or_cls)
    return attrs.fields(cls) if attrs.has(cls) else ()


def path_settings(config_cls: type) -> Iterator[tuple[str, str]]:
    """``(setting, kind)`` of every field a recipe resolves against its folder: ``data`` fields
    (kind ``"data"``) and ``path`` fields (their kind), in declaration order."""
    for f in _fields(config_cls):
        key = f.alias or f.name
        if f.metadata.get("data"):
            yield key, "data"
        elif f.metadata.get("path"):
            yield key, str(f.metadata["path"])
        elif f.metadata.get("checkpoint_ref"):
            yield key, "checkpoint_ref"


def is_path_reference(ref: str) -> bool:
    """Whether a checkpoint reference is written as a folder (it has a path separator or starts
    with ``~``), not as a stage name: a stage called ``rm`` is never mistaken for ``./rm``.

    Example:
        >>> is_path_reference("rm"), is_path_reference("./rm"), is_path_reference("runs/x/02-rm/model")
        (False, True, True)
    """
    return "/" in ref or os.sep in ref or ref.startswith("~")


def checkpoint_references(config: Any) -> list[tuple[str, str, str]]:
    """``(setting, value, kind)`` of every set ``checkpoint_ref`` field of ``config``."""
    found = []
    for f in _fields(config):
        kind = f.metadata.get("checkpoint_ref")
        value = getattr(config, f.name, None)
        if kind and isinstance(value, str) and value:
            found.append((f.alias or f.name, value, str(kind)))
    return found


def trainer_kwargs_problems(config: Any) -> list[str]:
    """``trainer_kwargs`` keys that are not fields of the stage's TRL config (``trl_config``)."""
    name = getattr(type(config), "trl_config", "") or ""
    kwargs = getattr(config, "trainer_kwargs", None)
    if not name or not kwargs:
        return []
    import trl

    trl_cls = getattr(trl, name, None)
    if trl_cls is None or not dataclasses.is_dataclass(trl_cls):
        return [f"trainer_kwargs: trl has no config class {name!r} (TRL {getattr(trl, '__version__', '?')})"]
    known = {f.name for f in dataclasses.fields(trl_cls)}
    unknown = sorted(set(kwargs) - known)
    if not unknown:
        return []
    plural = "s" if len(unknown) > 1 else ""
    return [
        f"trainer_kwargs: unknown trl.{name} setting{plural} {', '.join(map(repr, unknown))}; check the spelling "
        f"against TRL's {name} documentation"
    ]


def path_problems(config: Any) -> list[str]:
    """``path`` settings that name nothing (a file, a folder), or text given as a missing file."""
    problems = []
    for f in _fields(config):
        kind = f.metadata.get("path")
        value = getattr(config, f.name, None)
        if not kind or not isinstance(value, (str, os.PathLike)) or not value:
            continue
        key = f.alias or f.name
        text = os.fspath(value)
        if kind == "text":
            if looks_like_text_file(text):  # an existing file was read when the stage was built
                problems.append(f"{key}: {text!r} looks like a file name, but there is no such file; give the text "
                                "itself or an existing file (in a recipe, relative to the recipe's folder)")
            continue
        path = os.path.expanduser(text)
        exists = {"file": os.path.isfile, "dir": os.path.isdir, "any": os.path.exists}[kind](path)
        if not exists:
            what = {"file": "file", "dir": "folder", "any": "file or folder"}[kind]
            problems.append(f"{key}: no such {what} {text!r}; give an existing {what} (in a recipe, relative to "
                            "the recipe's folder)")
    return problems


def settings_problems(config: Any) -> list[str]:
    """What pre-flight checks of any stage's settings: ``trainer_kwargs`` against the stage's TRL
    config, and the files and folders its ``path`` settings name."""
    return trainer_kwargs_problems(config) + path_problems(config)
