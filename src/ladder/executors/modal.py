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
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError
from ladder.executors.modal_remote import move_paths, run_stage_remote
from ladder.executors.modal_app import (
    DEFAULT_GPU,
    INPUTS_ROOT,
    RUNS_ROOT,
    VOLUME_MOUNT,
    ModalSettings,
    _build,
    _modal,
    _settings,
    build_app,
    describe_app,
    image_description,
    parse_gpu,
)

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext, StageResult

__all__ = [
    "ModalExecutor",
    "ModalSettings",
    "build_app",
    "describe_app",
    "image_description",
    "parse_gpu",
    "run_stage_remote",
    "DEFAULT_GPU",
    "VOLUME_MOUNT",
]

logger = logging.getLogger(__name__)


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
        from ladder.executors.worker import seal_spec, stage_spec

        _type, gpu_count = parse_gpu(str((getattr(stage, "placement", None) or {}).get("gpu") or self.settings.gpu))
        # The spec is written to the volume; its secrets go in the call instead, to the worker's environment.
        spec, secrets = seal_spec(self._remote_spec(stage_spec(stage, checkpoint, ctx), ctx, volume))
        settings = {
            "env": secrets,
            "volume": self.settings.volume,
            "gpu_count": gpu_count,
            "accelerate_config": self.settings.accelerate_config,
            "commit_every": self.settings.commit_every,
        }
        return spec, settings

    def finish(
        self, outcome: Mapping[str, Any], spec: Mapping[str, Any], checkpoint: Checkpoint, ctx: StageContext,
        volume: Any, *, where: str = "Modal",
    ) -> StageResult:
        """Download the stage's outputs into ``ctx.work_dir``; return its checkpoint (local paths) and metrics.

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
        from ladder.stage import StageResult

        produced = checkpoint_from_chain([move_paths(outcome["checkpoint"][0], Path(remote_final), Path(ctx.work_dir))])
        return StageResult(attrs.evolve(produced, parent=checkpoint), outcome.get("metrics") or {})

    def call(self, stage: Stage, ctx: StageContext, spec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        """Run the stage's Modal function with ``spec`` and return its outcome."""
        from ladder.tracking import trackers_in

        modal = _modal()
        description = describe_app([stage], self.settings, indices=[ctx.index], trackers=trackers_in(ctx.options))
        (fn_name, fn_desc), = description["functions"].items()
        app, functions = _build(description)
        logger.info("%s: running on Modal (%s, function %s of app %s)", stage.name, fn_desc["gpu"], fn_name,
                    description["app"])
        with modal.enable_output(), app.run():
            return functions[fn_name].remote(spec, settings)

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        started = time.time()
        volume = self.volume()
        spec, settings = self.prepare(stage, checkpoint, ctx, volume)
        outcome = self.call(stage, ctx, spec, settings)
        produced = self.finish(outcome, spec, checkpoint, ctx, volume)
        logger.info("%s: ran on Modal and downloaded in %.0fs", stage.name, time.time() - started)
        return produced
