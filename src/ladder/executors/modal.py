"""Running stages on Modal: one GPU container per stage, checkpoints on a Modal Volume.

``pip install 'ladder[modal]'``, then ``modal setup`` once (your account), and in a recipe::

    executor: modal            # or {name: modal, volume: ladder, secret: huggingface-secret}
    stages:
      - stage: sft
        gpu: A10G              # Modal GPU string, per stage: "L40S", "H100", "H100:2", ...
        dataset: alpaca_en

What happens (:func:`build_app` describes it as plain data, then builds the Modal objects
from that description):

* **Image**: Debian slim with this Python version; ladder's own dependencies pinned to the
  versions installed here (``importlib.metadata``), so the container runs what you tested;
  then ladder itself and every installed package that declares ``ladder.stages`` or
  ``ladder.rewards`` entry points (your plugins), from their local source folder when they
  were installed from one, else from the package index at the installed version.
* **Volume** (default ``ladder``, mounted at ``/vol``): ``/vol/runs/<run>/`` mirrors the local
  run directory (stage outputs, and ``.trainer/`` with the resumable trainer checkpoints);
  ``/vol/hf-cache`` is the Hugging Face cache (``HF_HOME``), so a hub model downloads once.
* **Secret** ``huggingface-secret`` (configurable; ``secret=None`` for none) supplies
  ``HF_TOKEN`` for gated models: ``modal secret create huggingface-secret HF_TOKEN=hf_...``.
* **One function per stage** with the stage's ``gpu`` (default ``A10G``), a timeout and
  ``modal.Retries``. Its body writes the stage spec to the volume and runs the stage worker
  (``python -m ladder.executors.worker``; under ``accelerate launch`` when the stage asks for
  several GPUs, e.g. ``H100:4``), committing the volume periodically and at the end. After a
  preemption or a crash Modal retries the function and the stage resumes from its last
  complete trainer checkpoint on the volume.

:class:`ModalExecutor` runs one stage this way: it uploads what the stage needs and the
volume lacks (local datasets, a local base model, earlier outputs), calls the function, and
downloads the stage's outputs into the local work directory, which the pipeline then publishes
exactly as for a local run (probes, metrics and the report are computed locally).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError, MissingDependencyError, StageError

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext

__all__ = [
    "ModalExecutor",
    "ModalSettings",
    "build_app",
    "describe_app",
    "image_description",
    "parse_gpu",
    "DEFAULT_GPU",
    "VOLUME_MOUNT",
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


def image_description(settings: ModalSettings | None = None) -> dict[str, Any]:
    """The container image as plain data: Python, pinned pip packages, packages, environment."""
    settings = settings or ModalSettings()
    packages = [_package_source(d) for d in _ladder_distributions()]
    if not any(_canonical(p["name"]) == "ladder" for p in packages):
        raise MissingDependencyError("ladder (as an installed distribution)", package="-e <ladder checkout>")
    return {
        "python": settings.python_version,
        "pip": _pinned_requirements("ladder", settings.extras),
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


def _stages_of(pipeline_or_recipe: Any) -> tuple[str, list[Stage]]:
    from ladder.pipeline import Pipeline

    if isinstance(pipeline_or_recipe, (str, os.PathLike)):
        from ladder.recipe import load_recipe

        pipeline_or_recipe = load_recipe(pipeline_or_recipe)
    if isinstance(pipeline_or_recipe, Pipeline):
        return pipeline_or_recipe.name, list(pipeline_or_recipe.stages)
    stages = list(pipeline_or_recipe)
    return "run", stages


def function_name(index: int, stage_name: str) -> str:
    """The Modal function of a stage: ``stage-01-sft``."""
    return f"stage-{index:02d}-{stage_name}"


def describe_app(
    pipeline_or_recipe: Any, settings: ModalSettings | None = None, *, indices: Sequence[int] | None = None
) -> dict[str, Any]:
    """Everything :func:`build_app` makes, as plain data (what the tests and ``--dry-run`` show).

    Args:
        pipeline_or_recipe: a :class:`~ladder.pipeline.Pipeline`, a recipe path, or a list of stages.
        settings: Modal settings (defaults: :class:`ModalSettings`).
        indices: the 1-based pipeline positions of the given stages (default 1, 2, ...).
    """
    settings = settings or ModalSettings()
    run_name, stages = _stages_of(pipeline_or_recipe)
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
        "image": image_description(settings),
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


def build_app(pipeline_or_recipe: Any, settings: ModalSettings | None = None, **options: Any) -> tuple[Any, dict]:
    """A Modal app with one GPU function per stage, and the plain-data description it was built from.

    Args:
        pipeline_or_recipe: a :class:`~ladder.pipeline.Pipeline`, a recipe path, or a list of stages.
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
    description = describe_app(pipeline_or_recipe, settings)
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


# ------------------------------------------------------------------------------------------------
# inside the container


def _accelerate_prefix(count: int, config: str) -> list[str]:
    from ladder.executors.accelerate import AccelerateExecutor

    args, _env = AccelerateExecutor(num_processes=count, config=config).launch_args(cpu=False, gpus=count)
    return args


def run_stage_remote(spec: dict[str, Any], settings: dict[str, Any], volume: Any = None) -> dict[str, Any]:
    """The body of every stage function (runs in the Modal container).

    Writes the spec to the volume, runs the stage worker (under ``accelerate launch`` for
    several GPUs) while committing the volume every ``commit_every`` seconds, then moves the
    stage's outputs from its work folder to its stage folder on the volume and commits.

    Args:
        spec: the stage spec, its paths already on the volume (:meth:`ModalExecutor.prepare`).
        settings: ``volume`` (name), ``gpu_count``, ``accelerate_config``, ``commit_every``.
        volume: the mounted volume (default: ``modal.Volume.from_name(settings["volume"])``).

    Returns:
        ``{"ok": True, "checkpoint": [...]}`` (the checkpoint chain, volume paths), or
        ``{"ok": False, "error": {...}}`` for an error the stage reported (not retried: it
        would fail again). A worker that dies without reporting raises, so Modal retries it.
    """
    from ladder.executors.worker import ERROR_NAME, checkpoint_from_chain, worker_spec_paths

    if volume is None:
        import modal

        volume = modal.Volume.from_name(settings["volume"])
    try:
        volume.reload()  # see what the caller uploaded since this container started
    except Exception:  # nothing to reload on a fresh container
        logger.debug("volume reload failed", exc_info=True)
    ctx = spec["context"]
    work, final = Path(ctx["work_dir"]), Path(ctx["final_dir"])
    shutil.rmtree(work, ignore_errors=True)  # a preempted attempt's partial output (resumable state is elsewhere)
    spec_path, result_path = worker_spec_paths(Path(ctx["run_dir"]), spec["name"], ctx["fingerprint"])
    shutil.rmtree(spec_path.parent, ignore_errors=True)
    spec_path.parent.mkdir(parents=True)
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, "-m", "ladder.executors.worker", str(spec_path)]
    if int(settings.get("gpu_count", 1)) > 1:
        cmd = [*_accelerate_prefix(int(settings["gpu_count"]), settings["accelerate_config"]), "-m",
               "ladder.executors.worker", str(spec_path)]

    stop = threading.Event()

    def commit_periodically() -> None:  # trainer checkpoints must outlive a preemption
        while not stop.wait(float(settings.get("commit_every", 300))):
            try:
                volume.commit()
            except Exception:
                logger.warning("volume commit failed; trying again later", exc_info=True)

    committer = threading.Thread(target=commit_periodically, daemon=True)
    committer.start()
    try:
        returncode = subprocess.call(cmd)
    finally:
        stop.set()
        committer.join(timeout=5)
    if returncode == 0 and result_path.is_file():
        chain = json.loads(result_path.read_text(encoding="utf-8"))["checkpoint"]
        if final.exists():
            shutil.rmtree(final)
        os.rename(work, final)  # the stage's outputs now live where the next stage looks for them
        shutil.rmtree(ctx["trainer_dir"], ignore_errors=True)  # resumable state is no longer needed
        chain[0] = _move_paths(chain[0], work, final)
        checkpoint_from_chain(chain)  # check it still reads
        volume.commit()
        return {"ok": True, "checkpoint": chain}
    volume.commit()
    error = result_path.with_name(ERROR_NAME)
    if error.is_file():
        return {"ok": False, "error": json.loads(error.read_text(encoding="utf-8"))}
    raise StageError(f"stage {spec['name']!r}: the worker exited with status {returncode} without a result")


def _move_paths(data: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    out = dict(data)
    for key in ("path", "adapter_path"):
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = str(new / Path(value).relative_to(old))
            except ValueError:
                pass
    return out


# ------------------------------------------------------------------------------------------------
# the executor (runs locally, drives Modal)


class _Paths:
    """Maps the local run directory onto ``/runs/<run>-<hash>`` on the volume."""

    def __init__(self, local_run_dir: Path, mount: str) -> None:
        local = local_run_dir.resolve()
        tag = hashlib.sha256(str(local).encode()).hexdigest()[:8]
        self.local = local
        self.mount = mount.rstrip("/")
        self.volume_run = PurePosixPath(RUNS_ROOT) / f"{local.name}-{tag}"  # path inside the volume

    def in_volume(self, local_path: Path) -> PurePosixPath | None:
        try:
            rel = Path(local_path).resolve().relative_to(self.local)
        except ValueError:
            return None
        return self.volume_run / PurePosixPath(*rel.parts)

    def mounted(self, volume_path: PurePosixPath) -> str:
        """The path a container sees for a path inside the volume."""
        return f"{self.mount}{volume_path}"

    def in_volume_of(self, mounted: str) -> str:
        """The path inside the volume of a path a container sees."""
        return mounted[len(self.mount):] if mounted.startswith(self.mount + "/") else mounted


def _content_tag(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes() if f.stat().st_size < 64 << 20 else f"{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class ModalExecutor:
    """Runs each stage in a Modal GPU container (``executor: modal``). See the module docs.

    Args:
        **settings: :class:`ModalSettings` fields (``gpu``, ``volume``, ``secret``, ``timeout``,
            ``retries``, ``extras``, ``accelerate_config``, ``app_name``, ...).

    Raises:
        MissingDependencyError: ``modal`` is not installed (``pip install 'ladder[modal]'``).
    """

    name = "modal"

    def __init__(self, **settings: Any) -> None:
        _modal()
        self.settings = _settings(settings)

    def __repr__(self) -> str:
        return f"ModalExecutor({self.settings!r})"

    # uploads ------------------------------------------------------------------------------
    def _exists(self, volume: Any, path: PurePosixPath) -> bool:
        try:
            return bool(volume.listdir(str(path)))
        except Exception:  # modal raises NotFoundError (or a gRPC error) for a missing path
            return False

    def _remote_spec(self, spec: dict[str, Any], ctx: StageContext, volume: Any) -> dict[str, Any]:
        """``spec`` with every local path replaced by its volume path; uploads what is missing."""
        paths = _Paths(Path(ctx.run_dir), self.settings.mount)
        uploads: dict[PurePosixPath, Path] = {}
        mapped: dict[Path, str] = {}

        def remote_for(local: Path, *, model: bool) -> str:
            if local in mapped:
                return mapped[local]
            target = paths.in_volume(local)  # an earlier stage's output: there if Modal made it
            if target is None:  # a local model or dataset: uploaded once, named by content
                folder = "models" if model else "data"
                target = PurePosixPath(INPUTS_ROOT) / folder / f"{_content_tag(local)}-{local.name}"
            if target not in uploads and not self._exists(volume, target):
                uploads[target] = local
            mapped[local] = paths.mounted(target)
            return mapped[local]

        def checkpoints(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # Only the checkpoint itself is loaded; its ancestors' paths are lineage labels.
            head = dict(chain[0])
            for key in ("path", "adapter_path"):
                value = head.get(key)
                if isinstance(value, str) and os.path.isabs(value) and Path(value).exists():
                    head[key] = remote_for(Path(value), model=True)
            return [head, *chain[1:]]

        def config(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {k: config(v) for k, v in value.items()}
            if isinstance(value, list):
                return [config(v) for v in value]
            if isinstance(value, str) and os.path.isabs(value) and Path(value).exists():
                return remote_for(Path(value), model=False)
            return value

        c = spec["context"]
        final_dir = paths.in_volume(Path(c["final_dir"]))
        trainer_dir = paths.in_volume(Path(c["trainer_dir"]))
        if final_dir is None or trainer_dir is None:
            raise ConfigError(f"stage {spec['name']!r}: its directories are outside the run directory {paths.local}")
        remote = {
            **spec,
            "config": config(spec["config"]),
            "checkpoint": checkpoints(spec["checkpoint"]),
            "context": {
                **c,
                "run_dir": paths.mounted(paths.volume_run),
                "final_dir": paths.mounted(final_dir),
                "work_dir": paths.mounted(final_dir.with_name(final_dir.name + ".tmp-modal")),
                "trainer_dir": paths.mounted(trainer_dir),
                "checkpoints": {k: checkpoints(v) for k, v in (c.get("checkpoints") or {}).items()},
            },
        }
        if uploads:
            with volume.batch_upload(force=True) as batch:
                for target, local in uploads.items():
                    logger.info("uploading %s to the Modal volume %s:%s", local, self.settings.volume, target)
                    if local.is_dir():
                        batch.put_directory(str(local), str(target))
                    else:
                        batch.put_file(str(local), str(target))
        return remote

    # downloads ----------------------------------------------------------------------------
    def _download(self, volume: Any, remote_dir: str, local_dir: Path) -> None:
        prefix = _Paths(local_dir, self.settings.mount).in_volume_of(remote_dir)
        entries = volume.listdir(prefix, recursive=True)
        for entry in entries:
            if getattr(entry.type, "name", "") != "FILE":
                continue
            rel = PurePosixPath(entry.path.lstrip("/")).relative_to(PurePosixPath(prefix.lstrip("/")))
            target = local_dir / Path(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                volume.read_file_into_fileobj(entry.path, f)

    # running ------------------------------------------------------------------------------
    def volume(self) -> Any:
        """The Modal Volume (created on first use)."""
        return _modal().Volume.from_name(self.settings.volume, create_if_missing=True)

    def prepare(
        self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext, volume: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The spec and settings the stage function is called with; uploads what the volume lacks."""
        from ladder.executors.worker import stage_spec

        _type, gpu_count = parse_gpu(str((getattr(stage, "placement", None) or {}).get("gpu") or self.settings.gpu))
        spec = self._remote_spec(stage_spec(stage, checkpoint, ctx), ctx, volume)
        settings = {
            "volume": self.settings.volume,
            "gpu_count": gpu_count,
            "accelerate_config": self.settings.accelerate_config,
            "commit_every": self.settings.commit_every,
        }
        return spec, settings

    def finish(
        self, outcome: Mapping[str, Any], spec: Mapping[str, Any], checkpoint: Checkpoint, ctx: StageContext,
        volume: Any, *, where: str = "Modal",
    ) -> Checkpoint:
        """Download the stage's outputs into ``ctx.work_dir`` and return its checkpoint (local paths).

        Raises:
            LadderError: the stage reported an error (re-raised as its class where possible).
        """
        from ladder.executors.worker import checkpoint_from_chain

        if not outcome.get("ok"):
            from ladder.executors.process import reraise_worker_error

            reraise_worker_error(outcome.get("error") or {}, spec["name"], where,
                                 f"the Modal volume {self.settings.volume!r}, {spec['context']['run_dir']}/.executor")
        remote_final = spec["context"]["final_dir"]
        self._download(volume, remote_final, Path(ctx.work_dir))
        produced = checkpoint_from_chain([_move_paths(outcome["checkpoint"][0], Path(remote_final), Path(ctx.work_dir))])
        return attrs.evolve(produced, parent=checkpoint)

    def call(self, stage: Stage, ctx: StageContext, spec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        """Run the stage's Modal function with ``spec`` and return its outcome."""
        modal = _modal()
        description = describe_app([stage], self.settings, indices=[ctx.index])
        (fn_name, fn_desc), = description["functions"].items()
        app, functions = _build(description)
        logger.info("%s: running on Modal (%s, function %s of app %s)", stage.name, fn_desc["gpu"], fn_name,
                    description["app"])
        with modal.enable_output(), app.run():
            return functions[fn_name].remote(spec, settings)

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        started = time.time()
        volume = self.volume()
        spec, settings = self.prepare(stage, checkpoint, ctx, volume)
        outcome = self.call(stage, ctx, spec, settings)
        produced = self.finish(outcome, spec, checkpoint, ctx, volume)
        logger.info("%s: ran on Modal and downloaded in %.0fs", stage.name, time.time() - started)
        return produced
