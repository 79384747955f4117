"""Experiment tracking: one tracked run per stage, grouped under the ladder run.

``report_to: tensorboard | wandb | trackio | mlflow`` (or a list) in a recipe, or
``Pipeline(report_to=...)``. Two things are tracked:

- **Training curves**, by TRL's own integrations: every stage's trainer gets ``report_to``,
  ``run_name="<run>/<stage>"`` and ``project="<run>"`` (trackio), and the environment the
  integrations read (:func:`training_arguments`): ``TENSORBOARD_LOGGING_DIR`` (the run's
  ``tensorboard/<stage>/``), ``MLFLOW_EXPERIMENT_NAME`` (yours, else the run's name) and
  ``MLFLOW_TAGS``. The W&B run is started before the trainer's integration looks for one (it then
  uses it): project ``WANDB_PROJECT`` (yours, else the run's name), group the run, and an id per
  stage and fingerprint, so a resumed attempt continues its run.
- **What the report shows**, by ladder after it observed the stage (:func:`track_stage`,
  :mod:`ladder.tracking.log`): the
  probe answers and the stage's metrics as tables, and the metrics as scalars
  (``ladder/eval/verifiable/exact_match``...), in the stage's tracked run; the base model's
  in a run ``<run>/base``.

The trackers are optional packages (``pip install tensorboard``...; the ``tracking`` extra has
them all); pre-flight names a missing one. Offline modes are the trackers' own:
``WANDB_MODE=offline``, trackio's local database (``TRACKIO_DIR``), MLflow's local store.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError, MissingDependencyError
from ladder.layout import METRICS, TENSORBOARD_DIR, slug

if TYPE_CHECKING:
    from ladder.stage import StageContext

__all__ = [
    "TRACKERS",
    "TrackedRun",
    "parse_report_to",
    "require_installed",
    "stage_options",
    "training_arguments",
    "track_stage",
    "trackers_in",
    "wandb_run",
]


#: Tracker name -> the pip requirement that provides it (the module has the same name).
TRACKERS: dict[str, str] = {
    "tensorboard": "tensorboard>=2.14",
    "wandb": "wandb>=0.17",
    "trackio": "trackio>=0.43",
    "mlflow": "mlflow>=2.8",
}
#: Where the tracking settings travel to the process that trains (``StageContext.options``).
OPTIONS_KEY = "tracking"
#: Your settings of the trackers, carried to the process that trains (a Modal container does not
#: inherit your environment). Credentials are not among them: give those through the executor
#: (a Modal Secret with WANDB_API_KEY, ...), never through a file ladder writes.
PASSTHROUGH_ENV = (
    "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_TAGS", "WANDB_DIR",
    "TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_DIR",
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
)
_FINGERPRINT_MARKER = "LADDER_FINGERPRINT"
# What ladder itself put in os.environ, so that it is never taken for your setting later in the
# same process (a notebook running two pipelines).
_APPLIED: dict[str, str] = {}


def parse_report_to(value: Any) -> tuple[str, ...]:
    """The trackers ``report_to`` names: ``None``/``"none"``/``[]`` -> ``()``; a name, a
    comma-separated string or a list -> the names, each once, in order.

    Raises:
        ConfigError: a name that is not a tracker ladder knows, or a value of another type.

    Example:
        >>> parse_report_to("tensorboard, trackio"), parse_report_to(None), parse_report_to(["wandb"])
        (('tensorboard', 'trackio'), (), ('wandb',))
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(f"report_to: give a tracker name or a list of them ({', '.join(TRACKERS)}), "
                          f"got {type(value).__name__}")
    names = [v.lower() for v in items if v and v.lower() != "none"]
    unknown = [v for v in names if v not in TRACKERS]
    if unknown:
        raise ConfigError(f"report_to: unknown tracker{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; ladder knows: {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def require_installed(report_to: Iterable[str]) -> None:
    """Raise :class:`MissingDependencyError` with the pip command when a named tracker is missing."""
    missing = [name for name in report_to if importlib.util.find_spec(name) is None]
    if missing:
        packages = " ".join(f"'{TRACKERS[name]}'" for name in missing)
        raise MissingDependencyError(f"{', '.join(missing)} (report_to: {', '.join(missing)})", package=packages)


def trackers_in(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The trackers a stage's run options carry (what an executor installs where the stage runs)."""
    return tuple((options.get(OPTIONS_KEY) or {}).get("report_to") or ())


def _user_env() -> dict[str, str]:
    return {k: v for k in PASSTHROUGH_ENV if (v := os.environ.get(k)) and _APPLIED.get(k) != v}


def stage_options(options: Mapping[str, Any], report_to: Sequence[str], run_name: str) -> dict[str, Any]:
    """The run options a stage gets: ``options`` plus, when tracking, the trackers, the run's name
    and your tracker settings (:data:`PASSTHROUGH_ENV`)."""
    if not report_to:
        return dict(options)
    return {**options, OPTIONS_KEY: {"report_to": list(report_to), "run": run_name, "env": _user_env()}}


@attrs.frozen(kw_only=True)
class TrackedRun:
    """One stage's tracked run: its names in every tracker, derived from the ladder run.

    Attributes:
        run: the ladder run's name (the project / group).
        stage: the stage's name (``base`` for the base model's observation).
        fingerprint: the stage's fingerprint (one tracked run per attempt with new settings).
        run_dir: the run directory (TensorBoard's event files live below it).
    """

    run: str
    stage: str
    fingerprint: str
    run_dir: Path = attrs.field(converter=Path)

    @property
    def name(self) -> str:
        """``<run>/<stage>``: the tracked run's name everywhere."""
        return f"{self.run}/{self.stage}"

    @property
    def run_id(self) -> str:
        """A W&B run id: the same for every attempt of one stage with one fingerprint."""
        digest = hashlib.sha256(f"{self.run}\0{self.stage}\0{self.fingerprint}".encode()).hexdigest()[:8]
        return f"{slug(self.run, empty='run')[:40]}-{slug(self.stage, empty='run')[:40]}-{digest}"

    @property
    def tensorboard_dir(self) -> Path:
        """``<run_dir>/tensorboard/<stage>``: ``tensorboard --logdir <run_dir>/tensorboard`` shows one run per stage."""
        return self.run_dir / TENSORBOARD_DIR / self.stage

    def env(self, report_to: Sequence[str], user: Mapping[str, str]) -> dict[str, str]:
        """The environment TRL's integrations read for this run (see the module docs)."""
        env: dict[str, str] = {}
        if "tensorboard" in report_to:
            env["TENSORBOARD_LOGGING_DIR"] = str(self.tensorboard_dir)
        if "mlflow" in report_to:
            env["MLFLOW_EXPERIMENT_NAME"] = user.get("MLFLOW_EXPERIMENT_NAME") or self.run
            env["MLFLOW_TAGS"] = json.dumps(self.tags)
        return env

    @property
    def tags(self) -> dict[str, str]:
        return {"ladder.run": self.run, "ladder.stage": self.stage, "ladder.fingerprint": self.fingerprint}


def _apply_env(env: Mapping[str, str], *, keep_existing: bool) -> None:
    for key, value in env.items():
        if keep_existing and os.environ.get(key) and _APPLIED.get(key) != os.environ[key]:
            continue
        os.environ[key] = value
        _APPLIED[key] = value


def _fresh_tensorboard_dir(directory: Path, fingerprint: str) -> None:
    """Keep one attempt's event files per stage: a stage that trains again with other settings
    (a new fingerprint) replaces its curves, as it replaces its checkpoint; a resumed attempt
    adds to them."""
    marker = directory / _FINGERPRINT_MARKER
    try:
        previous = marker.read_text(encoding="utf-8").strip()
    except OSError:
        previous = None
    if previous is not None and previous != fingerprint:
        for stale in directory.glob("events.out.tfevents.*"):
            stale.unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n", encoding="utf-8")


def training_arguments(ctx: StageContext) -> dict[str, Any]:
    """TRL arguments for the stage's tracked run, with the integrations' environment set.

    Called by :func:`ladder.training.args.trainer_args` in the process that trains (a worker, a
    Modal container), before the trainer is built: TensorBoard's callback reads its directory
    when it is created. Without ``report_to`` the trainer reports nowhere (``"none"``).
    """
    tracking = ctx.options.get(OPTIONS_KEY) or {}
    report_to = list(tracking.get("report_to") or ())
    if not report_to:
        return {"report_to": "none"}
    tracked = TrackedRun(run=str(tracking.get("run") or ctx.run_dir.name), stage=ctx.stage_name,
                         fingerprint=ctx.fingerprint, run_dir=ctx.run_dir)
    user = dict(tracking.get("env") or {})
    _apply_env(user, keep_existing=True)  # where the pipeline's environment is not inherited (Modal)
    _apply_env(tracked.env(report_to, {**user, **_user_env()}), keep_existing=False)
    if "tensorboard" in report_to:
        _fresh_tensorboard_dir(tracked.tensorboard_dir, ctx.fingerprint)
    if "wandb" in report_to and int(os.environ.get("RANK", "0")) == 0:  # the integration logs on rank 0 only
        wandb_run(tracked)
    args: dict[str, Any] = {"report_to": report_to, "run_name": tracked.name}
    if "trackio" in report_to:
        args["project"] = tracked.run
    return args


def wandb_run(tracked: TrackedRun) -> Any:
    """The stage's W&B run: the one active in this process (the trainer's, in-process), else
    started (or continued, by its id) here. W&B reads its environment once per process, so the
    run's identity is given to ``wandb.init`` rather than through ``WANDB_RUN_ID``."""
    import wandb

    if wandb.run is not None and wandb.run.id == tracked.run_id:
        return wandb.run
    if wandb.run is not None:  # an earlier stage's run, left open by a failure: it is over
        wandb.run.finish()
    return wandb.init(project=os.environ.get("WANDB_PROJECT") or tracked.run, group=tracked.run,
                      name=tracked.name, id=tracked.run_id, resume="allow")


def track_stage(report_to: Sequence[str], run: str, stage: str, fingerprint: str, stage_dir: Path) -> None:
    """:func:`log_stage` for a stage directory the pipeline observed (its ``metrics.json``)."""
    if report_to:
        from ladder.tracking.log import log_stage

        path = stage_dir / METRICS
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        log_stage(report_to, TrackedRun(run=run, stage=stage, fingerprint=fingerprint, run_dir=stage_dir.parent),
                  metrics, stage_dir)
