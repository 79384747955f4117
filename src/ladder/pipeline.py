"""The :class:`Pipeline`: a plain loop over stages, with pre-flight, lineage and skip/resume."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.atomic import atomic_dir, atomic_write_json, clean_leftovers
from ladder.checkpoint import Checkpoint
from ladder.configs import config_to_dict
from ladder.errors import ConfigError, LadderError, StageError, ValidationError
from ladder.executors import get_executor
from ladder.fingerprints import base_checkpoint, references, stage_fingerprint, stage_package
from ladder.journal import TrainerJournal
from ladder.layout import BASE_DIR, FINAL_DIR, METRICS, stage_dir_name, trainer_dir
from ladder.observation import Observation, load_eval_rows, merge_metrics, read_metrics
from ladder.preflight import input_of, run_problems, structure_problems
from ladder.redaction import redact
from ladder.rundir import Manifest, published_checkpoint, record_failure
from ladder.runlock import RunLock, stop_on_signals
from ladder.stage import Stage, StageContext, as_result
from ladder.hub import push_problems, push_settings, push_stage, raise_push_failures
from ladder.tracking import parse_report_to, require_installed, stage_options, track_stage
from ladder.training.modes import stage_machine_problems

__all__ = ["MERGE_STRATEGIES", "Pipeline", "RunResult"]

#: What a stage publishes: a merged model (``every_stage``), or only its adapter (``final``, merged once at the end).
MERGE_STRATEGIES = ("every_stage", "final")

logger = logging.getLogger(__name__)


@attrs.frozen
class RunResult:
    """What :meth:`Pipeline.run` returns."""

    run_dir: Path
    checkpoints: Mapping[str, Checkpoint]
    final: Checkpoint  # the last stage's checkpoint; under merge: final, its adapters merged (final/model)
    trained: tuple[str, ...]  # stages trained in this call (the others were reused)
    report: Path | None = None


class Pipeline:
    """Compose stages: each starts from the previous stage's output, or from ``input=NAME``.

    Args:
        stages: the stages, in order.
        model: the base model: a hub id or local directory.
        run_dir: where everything is written (default ``runs/<name>``).
        name: the run's name.
        seed: the seed every stage uses.
        probes: probe prompts answered by the base model and after every stage (``None``:
            ladder's defaults; ``False``: no probes nor evaluations).
        evals: held-out evaluations run on every checkpoint: ``{"preference": dataset,
            "verifiable": dataset}``.
        generation: decoding settings for probes and evaluations (a mapping).
        options: run-wide settings: ``trust_remote_code``, ``allow_pickle_weights``, …
        recipe: the recipe this pipeline came from (recorded in the manifest).
        report_to: trackers (``tensorboard``, ``wandb``, ``trackio``, ``mlflow``, or a list), one
            tracked run ``<name>/<stage>`` per stage (:mod:`ladder.tracking`).
        push: stages to push to the hub once published (:class:`ladder.hub.PushSettings`).
        merge: ``"every_stage"`` (default: each stage publishes a merged model) or ``"final"`` (adapter
            stages keep only their adapters; the last stage's chain is merged once, into ``final/model``).
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        model: str | Path,
        run_dir: str | Path | None = None,
        name: str | None = None,
        seed: int = 0,
        probes: Any = None,
        evals: Mapping[str, Any] | None = None,
        generation: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        recipe: Mapping[str, Any] | None = None,
        revision: str | None = None,
        executor: Any = None,
        report_to: Any = None,
        push: Any = None,
        merge: str | None = None,
    ) -> None:
        self.stages = list(stages)
        self.model = str(model)
        self.revision = revision
        self.name = name or "run"
        self.run_dir = Path(run_dir) if run_dir is not None else Path("runs") / self.name
        self._run_dir_from_name = run_dir is None  # then the name must not escape runs/
        self.seed = seed
        self.probes = probes
        self.evals = dict(evals or {})
        self.generation = dict(generation or {})
        self.options = dict(options or {})
        self.recipe = dict(recipe or {})
        self.executor = executor
        self.report_to = parse_report_to(report_to)
        self.push = push_settings(push)
        self.merge = merge or "every_stage"
        if self.merge not in MERGE_STRATEGIES:
            raise ConfigError(f"merge must be one of {', '.join(MERGE_STRATEGIES)}, got {merge!r}")

    # pre-flight ----------------------------------------------------------------------------
    def _context(self, stage: Stage, index: int, **fields: Any) -> StageContext:
        final = self.run_dir / stage_dir_name(index, stage.name)
        values: dict[str, Any] = {
            "run_dir": self.run_dir,
            "work_dir": final,
            "final_dir": final,
            "trainer_dir": trainer_dir(self.run_dir, stage.name, ""),
            "stage_name": stage.name,
            "stage_kind": getattr(stage, "kind", ""),
            "index": index,
            "total": len(self.stages),
            "seed": self.seed,
            "options": stage_options(self.options, self.report_to, self.name),
            "merge": self.merge,
        }
        values.update(fields)
        return StageContext(**values)

    def validate(self) -> None:
        """Pre-flight: check everything before training; raise one error listing every problem."""
        require_installed(self.report_to)
        problems = run_problems(model=self.model, run_dir=self.run_dir, seed=self.seed, options=self.options)
        problems += structure_problems(self.stages, run_name=self.name if self._run_dir_from_name else None)
        # Stages keep the tokenizer they start from, so the base model's (when local) is the one
        # pre-flight measures row lengths with, for every stage.
        base = Checkpoint.base(self.model, revision=self.revision)
        for i, stage in enumerate(self.stages, 1):
            if not hasattr(stage, "validate"):
                continue
            ctx = self._context(stage, i, checkpoints={"base": base})
            try:
                problems.extend(stage.validate(ctx))
            except LadderError as exc:
                problems.append(f"stage {stage.name!r}: {exc}")
            problems.extend(stage_machine_problems(stage, self.executor))
        problems.extend(self._eval_problems())
        problems.extend(push_problems(self.push, self.stages))
        if problems:
            raise ValidationError(problems)

    def _eval_problems(self) -> list[str]:
        if not self.evals:
            return []
        try:
            load_eval_rows(self.evals)
        except LadderError as exc:
            return [f"evals: {exc}"]
        return []

    # fingerprints --------------------------------------------------------------------------
    def fingerprint(self, stage: Stage, input_fp: str, references: Mapping[str, str] | None = None) -> str:
        """Input checkpoint + stage type/name/config + data content + versions (of ladder, the
        stage's package and the packages of the rewards it names) + seed + ``references``
        (:meth:`references`); see :mod:`ladder.fingerprints`."""
        return stage_fingerprint(stage, input_fp, self.seed, references, merge=self.merge)

    @staticmethod
    def references(stage: Stage, outputs: Mapping[str, Checkpoint]) -> dict[str, str]:
        """Identities of the checkpoints and files the stage's settings name (see :meth:`fingerprint`)."""
        return references(stage, outputs)

    # running -------------------------------------------------------------------------------
    def run(self, *, force: bool = False, from_stage: str | None = None, progress: Any = None) -> RunResult:
        """Validate, then run every stage whose complete output is not already there.

        Args:
            force: re-run every stage.
            from_stage: re-run this stage and every stage after it.
            progress: an object with ``stage_started``/``log``/``stage_finished`` (the CLI's display).
        """
        self.validate()
        if from_stage is not None and from_stage not in [s.name for s in self.stages]:
            raise ConfigError(f"--from {from_stage!r}: no such stage; stages: {[s.name for s in self.stages]}")
        # One run per directory (a second one would delete this one's temp and trainer state);
        # SIGTERM stops the run as Ctrl-C does, leaving it resumable.
        with stop_on_signals(), RunLock(self.run_dir):
            return self._run(force=force, from_stage=from_stage, progress=progress)

    def _run(self, *, force: bool, from_stage: str | None, progress: Any) -> RunResult:
        # Exactly the temp names ladder creates: a stage's own name is never mistaken for one.
        for leftover in clean_leftovers(self.run_dir, exact=True):
            logger.info("removed an incomplete leftover: %s", leftover.name)
        base = base_checkpoint(self.model, self.revision)
        manifest = Manifest.start(
            self.run_dir,
            run_name=self.name,
            recipe=self.recipe,
            settings={"seed": self.seed, "options": self.options, "generation": self.generation,
                      **({"merge": self.merge} if self.merge != "every_stage" else {})},
            base=base.to_dict(),
            stages=[
                {
                    "name": s.name,
                    "kind": s.kind,
                    "index": i,
                    "dir": stage_dir_name(i, s.name),
                    "input": input_of(self.stages, i),
                    "status": "pending",
                    "config": config_to_dict(s.config),
                    "package": stage_package(s.kind),
                }
                for i, s in enumerate(self.stages, 1)
            ],
        )
        outputs: dict[str, Checkpoint] = {"base": base}
        trained: list[str] = []
        rerun = force
        current = "base"
        push_failures: list[str] = []
        try:
            observation = Observation(
                probes=self.probes, evals=self.evals, generation=self.generation, options=self.options,
                eval_rows=load_eval_rows(self.evals) if self.evals and self.probes is not False else {})
            base_metrics = observation.base(base, self.run_dir)
            if base_metrics is not None:
                manifest.data["base"]["metrics"] = base_metrics
                manifest.save()
            for i, stage in enumerate(self.stages, 1):
                current = stage.name
                rerun = rerun or stage.name == from_stage
                checkpoint = outputs[input_of(self.stages, i)]
                fp = self.fingerprint(stage, checkpoint.fingerprint, self.references(stage, outputs))
                final_dir = self.run_dir / stage_dir_name(i, stage.name)
                trainer = trainer_dir(self.run_dir, stage.name, fp)
                reused = None if rerun else published_checkpoint(final_dir, fp, checkpoint)
                if rerun or reused is not None:
                    # Forced: train from scratch, not from a crashed attempt's trainer checkpoints.
                    # Reused: state left by a crash between publication and clean-up.
                    shutil.rmtree(trainer, ignore_errors=True)
                if reused is not None:
                    outputs[stage.name] = reused
                    manifest.update_stage(stage.name, status="reused", fingerprint=fp,
                                          checkpoint=reused.to_dict(), metrics=read_metrics(final_dir))
                    if progress is not None:
                        progress.stage_finished(stage.name, "skipped", None, str(final_dir))
                    else:
                        logger.info("[%d/%d] %s: complete output found (fingerprint %s), skipped",
                                    i, len(self.stages), stage.name, fp)
                    self._push(stage.name, manifest, push_failures)
                    continue
                ctx = self._context(stage, i, fingerprint=fp, checkpoints=dict(outputs), trainer_dir=trainer)
                outputs[stage.name] = self._run_stage(stage, checkpoint, ctx, manifest, observation, progress)
                track_stage(self.report_to, self.name, stage.name, fp, final_dir)
                if not trained and base_metrics is not None:  # the base's observation, once per call that trains
                    track_stage(self.report_to, self.name, "base", base.fingerprint, self.run_dir / BASE_DIR)
                trained.append(stage.name)
                self._push(stage.name, manifest, push_failures)
            current, final = FINAL_DIR, outputs[self.stages[-1].name]
            if self.merge == "final" and final.adapters:  # the last stage's adapters, merged once
                from ladder.final_model import write_final_model

                final = write_final_model(self.run_dir, final, self.options, manifest,
                                          reused=published_checkpoint(self.run_dir / FINAL_DIR, final.fingerprint,
                                                                      final.parent))
        except BaseException as exc:
            record_failure(manifest, current, exc, progress, is_stage=any(s.name == current for s in self.stages),
                           write_report=self._write_report)
            if isinstance(exc, (LadderError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
                raise
            raise StageError(f"stage {current!r} failed: {type(exc).__name__}: {exc}") from exc
        manifest.finish("complete")
        report = self._write_report()
        raise_push_failures(self.run_dir, push_failures)
        return RunResult(self.run_dir, outputs, final, tuple(trained), report)

    def _push(self, name: str, manifest: Manifest, failures: list[str]) -> None:
        """Push a published stage when ``push:`` selects it; failures are raised once the run is complete."""
        record = push_stage(self.push, [s.name for s in self.stages], self.run_dir, name, run_name=self.name)
        if record is not None:
            manifest.update_stage(name, push=record)
            failures.extend([f"{name}: {record['error']}"] if "error" in record else [])

    def _run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext, manifest: Manifest,
                   observation: Observation, progress: Any) -> Checkpoint:
        started = time.time()
        manifest.update_stage(stage.name, status="running", fingerprint=ctx.fingerprint,
                              started_at=started, error=None)
        if progress is not None:
            progress.stage_started(ctx.index, ctx.total, stage.name, stage.kind)
        else:
            logger.info("[%d/%d] %s (%s) starting from %s", ctx.index, ctx.total, stage.name, stage.kind,
                        checkpoint.stage)
        final_dir = ctx.final_dir
        marker: dict[str, Any] = {"fingerprint": ctx.fingerprint}  # written last, by atomic_dir
        journal = TrainerJournal(ctx.trainer_dir)
        with atomic_dir(final_dir, replace=True, info=marker) as work:
            journal.start(work)
            ctx = attrs.evolve(ctx, work_dir=work,
                               on_log=journal.tee(progress.log if progress is not None else None))
            try:
                placement = getattr(stage, "placement", None) or {}
                executor = get_executor(placement.get("executor", self.executor))
                result = as_result(executor.run_stage(stage, checkpoint, ctx))
                metrics = self._stage_metrics(stage, ctx, result.metrics)
                if observation.enabled:
                    merge_metrics(metrics, observation.observe(result.checkpoint, work))
                atomic_write_json(work / METRICS, redact(metrics))
                published = _relocate(result.checkpoint, work, final_dir)
                marker["checkpoint"] = published.to_dict()
            except BaseException:
                try:
                    journal.keep(work)  # atomic_dir removes the temp dir next; the failed attempt's log stays
                except Exception:  # the stage's own error is the one to raise
                    logger.warning("could not keep the trainer log of stage %r", stage.name, exc_info=True)
                raise
        shutil.rmtree(ctx.trainer_dir, ignore_errors=True)  # published: resumable state no longer needed
        duration = time.time() - started
        manifest.update_stage(stage.name, status="complete", finished_at=time.time(), duration_s=duration,
                              checkpoint=published.to_dict(), metrics=metrics)
        if progress is not None:
            progress.stage_finished(stage.name, "complete", duration, str(final_dir))
        else:
            logger.info("[%d/%d] %s done in %.1fs -> %s", ctx.index, ctx.total, stage.name, duration, final_dir)
        return published

    @staticmethod
    def _stage_metrics(stage: Stage, ctx: StageContext, produced: Mapping[str, Any]) -> dict[str, Any]:
        """The stage's ``metrics.json`` before observation: who it is, and what it returned.

        A stage written for ladder 0.1 wrote ``metrics.json`` itself and returned a bare
        checkpoint; that file is read as its metrics.
        """
        metrics: dict[str, Any] = {"stage": stage.name, "kind": stage.kind, "index": ctx.index}
        if not produced:
            metrics.update({k: v for k, v in read_metrics(ctx.work_dir).items() if k not in metrics})
        metrics.update(produced)
        return metrics

    def _write_report(self) -> Path | None:
        try:
            from ladder.report import write_report
        except ImportError:
            return None
        try:
            return Path(write_report(self.run_dir).html)
        except Exception:  # the report must never hide the run's own outcome
            logger.warning("could not write the report", exc_info=True)
            return None

    def __repr__(self) -> str:
        return f"Pipeline({self.stages!r}, model={self.model!r}, run_dir={str(self.run_dir)!r})"


def _relocate(ckpt: Checkpoint, work: Path, final: Path) -> Checkpoint:
    def move(p: str | None) -> str | None:
        if p is None:
            return None
        path = Path(p)
        try:
            return str(final / path.relative_to(work))
        except ValueError:
            return p

    return attrs.evolve(ckpt, path=move(ckpt.path), adapter_path=move(ckpt.adapter_path),
                        adapters=tuple(move(a) for a in ckpt.adapters))
