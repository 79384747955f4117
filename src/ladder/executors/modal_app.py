"""The Modal app ladder runs stages in, described as plain data and then built from it.

See :mod:`ladder.executors.modal` for what runs where; this module holds the settings, the
container image (pinned to what is installed here, with ladder and its plugins), and one GPU
function per stage.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from ladder.stage import Stage

__all__ = [
    "DEFAULT_GPU",
    "VOLUME_MOUNT",
    "ModalSettings",
    "build_app",
    "describe_app",
    "function_name",
    "image_description",
    "parse_gpu",
]

logger = logging.getLogger(__name__)

DEFAULT_GPU = "A10G"
VOLUME_MOUNT = "/vol"
RUNS_ROOT = "/runs"  # inside the volume
INPUTS_ROOT = "/inputs"  # uploaded datasets and local models, inside the volume
HF_CACHE = "/hf-cache"  # inside the volume
SOURCE_ROOT = "/opt/ladder-src"  # local package sources, inside the image
# Modal's GPU types when this was written (others are passed through with a warning).
KNOWN_GPUS = ("T4", "L4", "A10", "A10G", "A100", "A100-40GB", "A100-80GB", "L40S", "H100", "H100!", "H200", "B200",
              "ANY")
# Folders never copied from a local package source into the image.
SOURCE_IGNORE = [".git", "**/.git", "**/__pycache__", "**/*.pyc", "runs", ".venv", "venv", "build", "dist",
                 "**/*.egg-info", ".pytest_cache", ".mypy_cache", "node_modules", "**/.executor"]


def _modal() -> Any:
    try:
        import modal
    except ImportError as exc:
        raise MissingDependencyError("modal (for executor: modal)", extra="modal") from exc
    return modal


# ------------------------------------------------------------------------------------------------
# settings


def _positive(_inst: Any, attr: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attr.name} must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class ModalSettings:
    """How stages run on Modal (the ``executor: {name: modal, ...}`` options)."""

    app_name: str = attrs.field(default="ladder", metadata={"help": "Modal app name (the run's name is appended)"})
    volume: str = attrs.field(default="ladder", metadata={"help": "Modal Volume holding runs and the model cache"})
    secret: str | None = attrs.field(
        default="huggingface-secret", metadata={"help": "Modal Secret with HF_TOKEN (None: no secret)"}
    )
    gpu: str = attrs.field(default=DEFAULT_GPU, metadata={"help": "GPU of stages that set no `gpu:`"})
    timeout: int = attrs.field(
        default=6 * 3600, validator=_positive, metadata={"help": "seconds one attempt of a stage may run (max 86400)"}
    )
    retries: int = attrs.field(
        default=2, validator=attrs.validators.ge(0), metadata={"help": "retries after a crash or preemption"}
    )
    extras: tuple[str, ...] = attrs.field(
        default=(), converter=tuple, metadata={"help": "ladder extras to install in the image, e.g. [vllm]"}
    )
    accelerate_config: str = attrs.field(
        default="multi_gpu", metadata={"help": "accelerate profile for stages with several GPUs (multi_gpu, zero3...)"}
    )
    commit_every: int = attrs.field(
        default=300, validator=_positive, metadata={"help": "seconds between volume commits while a stage trains"}
    )
    mount: str = attrs.field(
        default=VOLUME_MOUNT, metadata={"help": "where the volume is mounted in the containers"}
    )
    python_version: str = attrs.field(
        factory=lambda: f"{sys.version_info.major}.{sys.version_info.minor}",
        metadata={"help": "the image's Python (must match this one: functions are sent pickled)"},
    )

    def __attrs_post_init__(self) -> None:
        if self.timeout > 86400:
            raise ConfigError(f"modal executor: timeout {self.timeout}s is above Modal's limit of 86400s (24 h)")
        parse_gpu(self.gpu)


def parse_gpu(gpu: str) -> tuple[str, int]:
    """``"H100:2"`` -> ``("H100", 2)``; ``"A10G"`` -> ``("A10G", 1)``.

    Raises:
        ConfigError: not of the form ``TYPE`` or ``TYPE:COUNT`` (COUNT from 1 to 8).
    """
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9\-!]*)\s*(?::\s*(\d+))?\s*", str(gpu))
    if not m or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 8):
        raise ConfigError(
            f"invalid Modal GPU {gpu!r}: use a type with an optional count, e.g. A10G, L40S, H100 or H100:2 "
            f"(1 to 8 GPUs)"
        )
    kind, count = m.group(1).upper(), int(m.group(2) or 1)
    if kind not in KNOWN_GPUS:
        logger.warning("GPU type %r is not one ladder knows (%s); Modal will say if it is wrong",
                       kind, ", ".join(KNOWN_GPUS))
    return kind, count


# ------------------------------------------------------------------------------------------------
# the image, as plain data


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name: str) -> str | None:
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        return None
    return version.split("+", 1)[0]  # drop local labels such as +cpu: the image is a GPU one


def _pinned_requirements(dist_name: str, extras: Sequence[str]) -> list[str]:
    """``dist_name``'s requirements for Linux, pinned to the versions installed here."""
    from packaging.requirements import Requirement

    pins: list[str] = []
    seen: set[str] = set()
    for line in md.requires(dist_name) or []:
        req = Requirement(line)
        if req.marker is not None:
            wanted = [e for e in ("", *extras) if req.marker.evaluate(
                {"extra": e, "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"})]
            if not wanted:
                continue
        key = _canonical(req.name)
        if key in seen:
            continue
        seen.add(key)
        version = _installed_version(req.name)
        if version is not None and (not req.specifier or req.specifier.contains(version, prereleases=True)):
            pins.append(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}=={version}")
        else:  # not installed here (an extra's package): keep the range ladder declares
            pins.append(str(Requirement(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
                                        f"{req.specifier}")))
    return sorted(pins, key=str.lower)


def _ladder_distributions() -> list[md.Distribution]:
    """ladder and every installed distribution declaring ladder.stages/ladder.rewards entry points."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata.get("Name") or ""
        if not name:
            continue
        if _canonical(name) == "ladder" or any(
            ep.group in ("ladder.stages", "ladder.rewards") for ep in dist.entry_points
        ):
            found.setdefault(_canonical(name), dist)
    return [found[k] for k in sorted(found, key=lambda k: (k != "ladder", k))]


def _package_source(dist: md.Distribution) -> dict[str, Any]:
    """How the image gets ``dist``: its local source folder or wheel, a VCS/URL, or the index."""
    name, version = dist.metadata["Name"], dist.version
    entry: dict[str, Any] = {"name": name, "version": version}
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    url = (direct or {}).get("url", "")
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(url).path))
        if path.is_dir():
            return {**entry, "install": "local_dir", "source": str(path),
                    "remote": f"{SOURCE_ROOT}/{_canonical(name)}"}
        if path.is_file():
            return {**entry, "install": "local_file", "source": str(path),
                    "remote": f"{SOURCE_ROOT}/{path.name}"}
    source_tree = _egg_info_source_tree(dist)
    if direct is None and source_tree is not None:
        # a setuptools development checkout seen through its `*.egg-info` (e.g. `src/` on sys.path)
        return {**entry, "install": "local_dir", "source": str(source_tree),
                "remote": f"{SOURCE_ROOT}/{_canonical(name)}"}
    if "vcs_info" in (direct or {}):
        vcs = direct["vcs_info"]
        return {**entry, "install": "pip", "requirement": f"{name} @ {vcs['vcs']}+{url}@{vcs.get('commit_id', '')}"}
    if url:
        return {**entry, "install": "pip", "requirement": f"{name} @ {url}"}
    return {**entry, "install": "pip", "requirement": f"{name}=={version}"}


def _egg_info_source_tree(dist: md.Distribution) -> Path | None:
    """The project folder holding ``dist``'s ``*.egg-info`` (next to it or one level up), if any."""
    meta = getattr(dist, "_path", None)
    if meta is None or not str(meta).endswith(".egg-info"):
        return None
    meta = Path(meta).resolve()
    for folder in (meta.parent, meta.parent.parent):
        if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file():
            return folder
    return None


def _tracker_requirements(trackers: Sequence[str]) -> list[str]:
    """The trackers' packages (``report_to``), pinned to the versions installed here when they are."""
    from packaging.requirements import Requirement

    from ladder.tracking import TRACKERS

    reqs = [Requirement(TRACKERS[name]) for name in trackers]
    return [f"{r.name}=={v}" if (v := _installed_version(r.name)) and r.specifier.contains(v) else str(r) for r in reqs]


def image_description(settings: ModalSettings | None = None, trackers: Sequence[str] = ()) -> dict[str, Any]:
    """The container image as plain data: Python, pinned pip packages (the ``trackers``' too), packages, env."""
    settings = settings or ModalSettings()
    packages = [_package_source(d) for d in _ladder_distributions()]
    if not any(_canonical(p["name"]) == "ladder" for p in packages):
        raise MissingDependencyError("ladder (as an installed distribution)", package="-e <ladder checkout>")
    pip = {*_pinned_requirements("ladder", settings.extras), *_tracker_requirements(trackers)}
    return {
        "python": settings.python_version,
        "pip": sorted(pip, key=str.lower),
        "packages": packages,
        "env": {
            "HF_HOME": f"{settings.mount}{HF_CACHE}",
            "TOKENIZERS_PARALLELISM": "false",
            "TQDM_DISABLE": "1",
            "PYTHONUNBUFFERED": "1",
        },
    }


# ------------------------------------------------------------------------------------------------
# the app, as plain data, then as Modal objects


def _stages_of(pipeline_or_stages: Any) -> tuple[str, list[Stage]]:
    """A pipeline's name and stages (anything with ``.stages``), or ``"run"`` and a list of stages."""
    if isinstance(pipeline_or_stages, (str, os.PathLike)):
        raise ConfigError(
            f"give a Pipeline or a list of stages, not the recipe path {os.fspath(pipeline_or_stages)!r}: "
            "load it first with ladder.load_recipe(path)"
        )
    stages = getattr(pipeline_or_stages, "stages", None)
    if stages is not None:
        return str(getattr(pipeline_or_stages, "name", "run")), list(stages)
    return "run", list(pipeline_or_stages)


def function_name(index: int, stage_name: str) -> str:
    """The Modal function of a stage: ``stage-01-sft``."""
    return f"stage-{index:02d}-{stage_name}"


def describe_app(
    pipeline_or_stages: Any, settings: ModalSettings | None = None, *, indices: Sequence[int] | None = None,
    trackers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything :func:`build_app` makes, as plain data (what the tests and ``--dry-run`` show).

    Args:
        pipeline_or_stages: a :class:`~ladder.pipeline.Pipeline` (``load_recipe(path)``) or a list of stages.
        settings: Modal settings (defaults: :class:`ModalSettings`).
        indices: the 1-based pipeline positions of the given stages (default 1, 2, ...).
        trackers: the trackers the image installs (default: the pipeline's ``report_to``).
    """
    settings = settings or ModalSettings()
    run_name, stages = _stages_of(pipeline_or_stages)
    indices = list(indices) if indices is not None else list(range(1, len(stages) + 1))
    secrets = [settings.secret] if settings.secret else []
    functions = {}
    for index, stage in zip(indices, stages, strict=True):
        placement = dict(getattr(stage, "placement", None) or {})
        gpu = str(placement.get("gpu") or settings.gpu)
        gpu_type, gpu_count = parse_gpu(gpu)
        functions[function_name(index, stage.name)] = {
            "stage": stage.name,
            "kind": stage.kind,
            "index": index,
            "gpu": gpu,
            "gpu_count": gpu_count,
            "timeout": settings.timeout,
            "retries": {"max_retries": settings.retries, "initial_delay": 10.0, "backoff_coefficient": 2.0},
            "volumes": {settings.mount: settings.volume},
            "secrets": secrets,
            "launcher": "accelerate" if gpu_count > 1 else "python",
            "accelerate_config": settings.accelerate_config if gpu_count > 1 else None,
        }
    return {
        "app": f"{settings.app_name}-{run_name}",
        "volume": {"name": settings.volume, "mount": settings.mount, "runs": RUNS_ROOT, "hf_cache": HF_CACHE},
        "secrets": secrets,
        "image": image_description(settings, trackers if trackers is not None else
                                   tuple(getattr(pipeline_or_stages, "report_to", ()) or ())),
        "functions": functions,
        "worker": "python -m ladder.executors.worker",
    }


def _image_from(description: Mapping[str, Any]) -> Any:
    modal = _modal()
    image = modal.Image.debian_slim(python_version=description["python"]).pip_install(*description["pip"])
    local: list[str] = []
    for package in description["packages"]:
        if package["install"] == "local_dir":
            image = image.add_local_dir(package["source"], package["remote"], copy=True, ignore=SOURCE_IGNORE)
            local.append(package["remote"])
        elif package["install"] == "local_file":
            image = image.add_local_file(package["source"], package["remote"], copy=True)
            local.append(package["remote"])
    if local:
        # Dependencies are already pinned above, so this only adds the packages themselves.
        image = image.run_commands("python -m pip install " + " ".join(local))
    from_index = [p["requirement"] for p in description["packages"] if p["install"] == "pip"]
    if from_index:
        image = image.pip_install(*from_index)
    return image.env(dict(description["env"]))


def _build(description: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The Modal app and its functions (by name), made from ``description``."""
    from ladder.executors.modal_remote import run_stage_remote

    modal = _modal()
    app = modal.App(description["app"])
    image = _image_from(description["image"])
    volume = modal.Volume.from_name(description["volume"]["name"], create_if_missing=True)
    secrets = [modal.Secret.from_name(name) for name in description["secrets"]]
    functions = {}
    for name, fn in description["functions"].items():
        functions[name] = app.function(
            name=name,
            serialized=True,  # one function per stage, made here rather than at module level
            image=image,
            gpu=fn["gpu"],
            timeout=fn["timeout"],
            retries=modal.Retries(**fn["retries"]),
            volumes={mount: volume for mount in fn["volumes"]},
            secrets=secrets,
            include_source=False,  # ladder is installed in the image
        )(run_stage_remote)
    return app, functions


def build_app(pipeline_or_stages: Any, settings: ModalSettings | None = None, **options: Any) -> tuple[Any, dict]:
    """A Modal app with one GPU function per stage, and the plain-data description it was built from.

    Args:
        pipeline_or_stages: a :class:`~ladder.pipeline.Pipeline` (``load_recipe(path)``) or a list of stages.
        settings: :class:`ModalSettings`; or give its fields as keyword arguments.

    Returns:
        ``(app, description)``: the ``modal.App`` (deploy it with ``modal deploy`` or run a
        function inside ``app.run()``) and :func:`describe_app`'s description.

    Raises:
        MissingDependencyError: ``modal`` is not installed.
        ConfigError: a stage's ``gpu:`` is not a Modal GPU string, or a setting is invalid.
    """
    _modal()
    settings = settings or _settings(options)
    description = describe_app(pipeline_or_stages, settings)
    app, _functions = _build(description)
    return app, description


def _settings(options: Mapping[str, Any]) -> ModalSettings:
    try:
        return ModalSettings(**options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        known = ", ".join(f.name for f in attrs.fields(ModalSettings))
        raise ConfigError(f"modal executor: {exc}; known settings: {known}") from exc
