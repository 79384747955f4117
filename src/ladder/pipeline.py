"""The :class:`Pipeline`: a plain loop over stages, with pre-flight, lineage and skip/resume."""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.atomic import atomic_dir, clean_leftovers, is_complete
from ladder.checkpoint import Checkpoint, fingerprint_of
from ladder.errors import ConfigError, LadderError, StageError, ValidationError
from ladder.executors import get_executor
from ladder.registry import stages as stage_registry
from ladder.rundir import Manifest, redact, safe_name, stage_dir_name, versions
from ladder.stage import Stage, StageContext, config_to_dict, fingerprint_config

__all__ = ["Pipeline", "RunResult"]

logger = logging.getLogger(__name__)

# Config settings through which a stage uses another stage's checkpoint besides its input (by
# name): checked in pre-flight, and that checkpoint's fingerprint is part of the stage's.
_REFERENCE_SETTINGS = ("reward_model",)


@attrs.frozen
class RunResult:
    """What :meth:`Pipeline.run` returns."""

    run_dir: Path
    checkpoints: Mapping[str, Checkpoint]
    final: Checkpoint
    trained: tuple[str, ...]  # stages trained in this call (the others were reused)
    report: Path | None = None


def _stage_package(kind: str) -> str:
    try:
        entry = stage_registry.entry(kind)
        return f"{entry.package}=={entry.version}"
    except LadderError:
        return "unregistered"


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


    # pre-flight ----------------------------------------------------------------------------
    def _structure_problems(self) -> list[str]:
        problems: list[str] = []
        seen: dict[str, Stage] = {}
        produced: dict[str, str] = {"base": "policy"}
        if not self.stages:
            problems.append("the pipeline has no stages")
        if getattr(self, "_run_dir_from_name", False):
            try:
                safe_name(self.name, "run name")
            except ConfigError as exc:
                problems.append(f"{exc} (runs/<name>), or set run_dir")
        for i, stage in enumerate(self.stages, 1):
            label = f"stage {i} ({getattr(stage, 'name', '?')!r})"
            missing = [m for m in ("name", "input", "config", "run", "validate") if not hasattr(stage, m)]
            if missing:
                problems.append(f"{label}: not a Stage (missing {', '.join(missing)})")
                continue
            try:
                safe_name(stage.name)
            except ConfigError as exc:
                problems.append(f"{label}: {exc}")
            if stage.name in seen or stage.name == "base":
                problems.append(f"{label}: the name {stage.name!r} is used twice; give each stage a unique name=")
            source = stage.input or (self.stages[i - 2].name if i > 1 else "base")
            if stage.input is not None and stage.input not in produced:
                known = ", ".join(produced)
                problems.append(
                    f"{label}: input={stage.input!r} is not an earlier stage; choose one of: {known}"
                )
            else:
                needs = getattr(stage, "input_kind", "policy")
                has = produced.get(source, "policy")
                if needs != has:
                    fitting = [n for n, k in produced.items() if k == needs]
                    hint = f" (earlier {needs} stages: {', '.join(fitting)})" if fitting else ""
                    problems.append(
                        f"{label} ({stage.kind}) needs a {needs} checkpoint as input, but {source!r} "
                        f"produces a {has} checkpoint; set input= to a {needs} stage{hint}"
                    )
            problems += self._reference_problems(label, i, produced)
            seen[stage.name] = stage
            produced[stage.name] = getattr(stage, "output_kind", "policy")
        return problems

    def _reference_problems(self, label: str, index: int, produced: Mapping[str, str]) -> list[str]:
        """Checkpoints a stage's settings name (``reward_model``) must be earlier reward stages."""
        from ladder.training.rl import is_path_reference

        stage = self.stages[index - 1]
        later = {s.name: j for j, s in enumerate(self.stages, 1) if j > index}
        problems = []
        for setting in _REFERENCE_SETTINGS:
            ref = getattr(stage.config, setting, None)
            if not isinstance(ref, str):
                continue
            rewards = ", ".join(n for n, k in produced.items() if k == "reward") or "none"
            if ref in produced and produced[ref] != "reward":
                problems.append(
                    f"{label}: {setting}={ref!r} names stage {ref!r}, which produces a {produced[ref]} "
                    f"checkpoint, not a reward model; name an rm stage (earlier reward stages: {rewards})"
                )
            elif ref == stage.name:
                problems.append(f"{label}: {setting}={ref!r} names the stage itself; name an earlier rm stage")
            elif ref in later:
                problems.append(
                    f"{label}: {setting}={ref!r} names stage {later[ref]} ({ref!r}), which runs after "
                    f"{stage.name!r}; put the {ref!r} stage before {stage.name!r}"
                )
            elif ref not in produced and not is_path_reference(ref):
                problems.append(
                    f"{label}: {setting}={ref!r} names no stage (earlier reward stages: {rewards}); name an "
                    f"rm stage that runs before {stage.name!r}, or give a reward checkpoint folder as a path "
                    f"(./{ref})"
                )
        return problems

    def _context(self, stage: Stage, index: int) -> StageContext:
        final = self.run_dir / stage_dir_name(index, stage.name)
        return StageContext(
            run_dir=self.run_dir,
            work_dir=final,
            final_dir=final,
            trainer_dir=self.run_dir / ".trainer" / stage.name,
            index=index,
            total=len(self.stages),
            seed=self.seed,
            options=self.options,
        )

    def validate(self) -> None:
        """Pre-flight: check everything before training; raise one error listing every problem."""
        problems = self._structure_problems()
        # Stages keep the tokenizer they start from, so the base model's (when local) is the one
        # pre-flight measures row lengths with, for every stage.
        base = Checkpoint.base(self.model, revision=self.revision)
        for i, stage in enumerate(self.stages, 1):
            if not hasattr(stage, "validate"):
                continue
            ctx = self._context(stage, i)
            ctx.checkpoints = {"base": base}
            try:
                problems.extend(stage.validate(ctx))
            except LadderError as exc:
                problems.append(f"stage {stage.name!r}: {exc}")
        problems.extend(self._eval_problems())
        if problems:
            raise ValidationError(problems)

    def _eval_problems(self) -> list[str]:
        if not self.evals:
            return []
        try:
            self._eval_rows()
        except LadderError as exc:
            return [f"evals: {exc}"]
        return []

    def _eval_rows(self) -> dict[str, list[dict[str, Any]]]:
        from ladder.data.loading import load_rows

        out: dict[str, list[dict[str, Any]]] = {}
        for key, spec in self.evals.items():
            if key == "behaviour":  # the behaviour suites' settings, not a dataset (ladder.evals)
                from ladder.evals import resolve_behaviour

                out[key] = resolve_behaviour(spec)  # type: ignore[assignment]
                continue
            rows, label = load_rows(spec)
            if key == "preference":
                from ladder.data.preference import normalize_preference_rows

                out[key], problems = normalize_preference_rows(rows, label)
            elif key == "verifiable":
                from ladder.data.verifiable import normalize_verifiable_rows

                out[key], problems = normalize_verifiable_rows(rows, label)
            else:
                raise ConfigError(f"unknown evaluation {key!r}; use 'preference', 'verifiable' or 'behaviour'")
            if problems:
                raise problems[0]
        return out

    # fingerprints --------------------------------------------------------------------------
    def fingerprint(self, stage: Stage, input_fp: str, references: Mapping[str, str] | None = None) -> str:
        """Input checkpoint + stage type/name/config + data content + versions.

        ``references``: fingerprints of the other checkpoints the stage uses (a reward model),
        by setting name; a stage that uses none fingerprints as it always did.
        """
        parts: list[Any] = [
            input_fp,
            stage.kind,
            stage.name,
            fingerprint_config(stage.config),
            stage.fingerprint_data(),
            versions().get("ladder"),
            _stage_package(stage.kind),
            self.seed,
        ]
        if references:
            parts.append(dict(sorted(references.items())))
        return fingerprint_of(*parts)

    @staticmethod
    def _references(stage: Stage, outputs: Mapping[str, Checkpoint]) -> dict[str, str]:
        """Fingerprints of the earlier checkpoints the stage's settings name."""
        found = {}
        for setting in _REFERENCE_SETTINGS:
            ref = getattr(stage.config, setting, None)
            if isinstance(ref, str) and ref in outputs:
                found[setting] = outputs[ref].fingerprint
        return found

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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in clean_leftovers(self.run_dir):
            logger.info("removed an incomplete leftover: %s", leftover.name)
        base = Checkpoint.base(self.model, revision=self.revision)
        manifest = Manifest.start(
            self.run_dir,
            run_name=self.name,
            recipe=self.recipe,
            settings={"seed": self.seed, "options": self.options, "generation": self.generation},
            base=base.to_dict(),
            stages=[
                {
                    "name": s.name,
                    "kind": s.kind,
                    "index": i,
                    "dir": stage_dir_name(i, s.name),
                    "input": s.input or (self.stages[i - 2].name if i > 1 else "base"),
                    "status": "pending",
                    "config": config_to_dict(s.config),
                    "package": _stage_package(s.kind),
                }
                for i, s in enumerate(self.stages, 1)
            ],
        )
        outputs: dict[str, Checkpoint] = {"base": base}
        trained: list[str] = []
        rerun = force
        current = "base"
        try:
            eval_rows = self._eval_rows() if self.evals and self.probes is not False else {}
            self._observe_base(base, manifest, eval_rows)
            for i, stage in enumerate(self.stages, 1):
                current = stage.name
                rerun = rerun or stage.name == from_stage
                source = stage.input or (self.stages[i - 2].name if i > 1 else "base")
                checkpoint = outputs[source]
                fp = self.fingerprint(stage, checkpoint.fingerprint, self._references(stage, outputs))
                ctx = self._context(stage, i)
                ctx.fingerprint = fp
                ctx.checkpoints = dict(outputs)
                ctx.trainer_dir = self.run_dir / ".trainer" / f"{stage.name}-{fp}"
                reused = None if rerun else self._reuse(ctx.final_dir, fp, checkpoint)
                if rerun or reused is not None:
                    # Forced: train from scratch, not from a crashed attempt's trainer checkpoints.
                    # Reused: state left by a crash between publication and clean-up.
                    shutil.rmtree(ctx.trainer_dir, ignore_errors=True)
                if reused is not None:
                    outputs[stage.name] = reused
                    manifest.update_stage(stage.name, status="reused", fingerprint=fp,
                                          checkpoint=reused.to_dict(), metrics=_read_metrics(ctx.final_dir))
                    if progress is not None:
                        progress.stage_finished(stage.name, "skipped", None, str(ctx.final_dir))
                    else:
                        logger.info("[%d/%d] %s: complete output found (fingerprint %s), skipped",
                                    i, len(self.stages), stage.name, fp)
                    continue
                outputs[stage.name] = self._run_stage(stage, checkpoint, ctx, manifest, eval_rows, progress)
                trained.append(stage.name)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            try:
                manifest.update_stage(current, status="failed", error=error,
                                      traceback=traceback.format_exc(limit=20), finished_at=time.time())
            except KeyError:
                pass
            manifest.finish("failed", error=f"stage {current!r} failed: {error}")
            if progress is not None:
                progress.stage_finished(current, "failed", None, None)
            self._write_report()
            if isinstance(exc, (LadderError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
                raise
            raise StageError(f"stage {current!r} failed: {error}") from exc
        manifest.finish("complete")
        report = self._write_report()
        final = outputs[self.stages[-1].name]
        return RunResult(self.run_dir, outputs, final, tuple(trained), report)

    def _reuse(self, final_dir: Path, fp: str, parent: Checkpoint) -> Checkpoint | None:
        if not is_complete(final_dir):
            return None
        try:
            marker = json.loads((final_dir / "COMPLETE").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if marker.get("fingerprint") != fp or "checkpoint" not in marker:
            return None
        return Checkpoint.from_dict(marker["checkpoint"], parent=parent)

    def _run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext, manifest: Manifest,
                   eval_rows: dict[str, Any], progress: Any) -> Checkpoint:
        started = time.time()
        manifest.update_stage(stage.name, status="running", fingerprint=ctx.fingerprint,
                              started_at=started, error=None)
        if progress is not None:
            progress.stage_started(ctx.index, ctx.total, stage.name, stage.kind)
            ctx.on_log = progress.log
        else:
            logger.info("[%d/%d] %s (%s) starting from %s", ctx.index, ctx.total, stage.name, stage.kind,
                        checkpoint.stage)
        final_dir = ctx.final_dir
        marker: dict[str, Any] = {"fingerprint": ctx.fingerprint}  # written last, by atomic_dir
        journal = _TrainerJournal(ctx.trainer_dir)
        with atomic_dir(final_dir, replace=True, info=marker) as work:
            ctx.work_dir = work
            journal.start(work)
            ctx.on_log = journal.tee(ctx.on_log)
            try:
                placement = getattr(stage, "placement", None) or {}
                produced = get_executor(placement.get("executor", self.executor)).run_stage(stage, checkpoint, ctx)
                metrics = _read_metrics(work)
                if self.probes is not False:
                    _merge_metrics(metrics, self._observe(produced, work, eval_rows))
                from ladder.atomic import atomic_write_json

                atomic_write_json(work / "metrics.json", metrics)
                published = _relocate(produced, work, final_dir)
                marker["checkpoint"] = published.to_dict()
            except BaseException:
                journal.keep(work)  # atomic_dir removes the temp dir next; the failed attempt's log stays
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

    # probes and evaluations ----------------------------------------------------------------
    def _observe(self, checkpoint: Checkpoint, out_dir: Path, eval_rows: dict[str, Any]) -> dict[str, Any]:
        from ladder.generation import GenerationSettings
        from ladder.insight import observe
        from ladder.probes import resolve_probes

        settings = GenerationSettings(**self.generation)
        base = next(iter(reversed(list(checkpoint.lineage()))))
        return observe(checkpoint, out_dir, probes=resolve_probes(self.probes), evals=eval_rows,
                       settings=settings, options=self.options, reference=base)

    def _observe_base(self, base: Checkpoint, manifest: Manifest, eval_rows: dict[str, Any]) -> None:
        if self.probes is False:
            return
        base_dir = self.run_dir / "00-base"
        fp = fingerprint_of(base.fingerprint, repr(self.probes), self.evals and config_to_dict(self.evals),
                            self.generation)
        if is_complete(base_dir):
            try:
                if json.loads((base_dir / "COMPLETE").read_text()).get("fingerprint") == fp:
                    manifest.data["base"]["metrics"] = _read_metrics(base_dir)
                    return
            except (OSError, ValueError):
                pass
        with atomic_dir(base_dir, replace=True, info={"fingerprint": fp}) as work:
            metrics = {"stage": "base", "kind": "base", "index": 0, **self._observe(base, work, eval_rows)}
            from ladder.atomic import atomic_write_json

            atomic_write_json(work / "metrics.json", metrics)
        manifest.data["base"]["metrics"] = metrics
        manifest.save()

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


class _TrainerJournal:
    """A stage's trainer log kept beside its resumable state, so a crash loses none of it.

    The stage writes ``trainer_log.jsonl`` into its temp dir, which a crash leaves behind as an
    incomplete leftover (removed by the next run) and an exception removes at once. This keeps a
    copy at ``<trainer_dir>/trainer_log.jsonl``: every record is appended to it as it is logged
    (through ``ctx.on_log``, which every executor calls), and on an exception the temp dir's own
    file replaces it. When the stage later resumes from trainer checkpoint ``checkpoint-N``, the
    records up to step ``N`` seed the new attempt's log, so the published log is whole; records
    after ``N`` are dropped because those steps are trained again.
    """

    NAME = "trainer_log.jsonl"

    def __init__(self, trainer_dir: Path) -> None:
        self.path = trainer_dir / self.NAME

    def start(self, work: Path) -> None:
        """Seed ``work/trainer_log.jsonl`` with the records the resumed attempt will not repeat."""
        from ladder.atomic import atomic_write_text
        from ladder.training.common import last_complete_trainer_checkpoint

        resume = last_complete_trainer_checkpoint(self.path.parent)
        step = int(resume.name.rsplit("-", 1)[1]) if resume is not None else 0
        kept: list[str] = []
        if step and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by the crash
                    continue
                # The end-of-training summary is logged again when training ends.
                if isinstance(record, dict) and record.get("step", 0) <= step and "train_runtime" not in record:
                    kept.append(line + "\n")
        text = "".join(kept)
        if kept:
            logger.info("resuming the trainer log at step %d (%d records kept)", step, len(kept))
            atomic_write_text(work / self.NAME, text)
        if self.path.parent.is_dir():
            atomic_write_text(self.path, text)

    def tee(self, on_log: Any) -> Any:
        """``on_log`` that also appends each record to the journal."""
        path = self.path

        def log(record: dict[str, Any]) -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record, default=str) + "\n")
            except OSError:  # the journal is a safety copy; training goes on without it
                logger.debug("could not append to %s", path, exc_info=True)
            if on_log is not None:
                on_log(record)

        return log

    def keep(self, work: Path) -> None:
        """Keep the failed attempt's log (the temp dir's file is the complete one)."""
        source = work / self.NAME
        if not source.is_file():
            return
        try:
            from ladder.atomic import atomic_write_text

            atomic_write_text(self.path, source.read_text(encoding="utf-8"))
        except OSError:
            logger.warning("could not keep the trainer log of the failed stage at %s", self.path, exc_info=True)


def _merge_metrics(metrics: dict[str, Any], observed: Mapping[str, Any]) -> None:
    """Add the probes' and evaluations' sections to a stage's metrics, keeping the stage's own
    keys in a shared section (a reward stage's ``eval.rm_accuracy`` beside ``eval.preference``)."""
    for key, value in observed.items():
        if isinstance(value, Mapping) and isinstance(metrics.get(key), Mapping):
            metrics[key] = {**metrics[key], **value}
        else:
            metrics[key] = value


def _read_metrics(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _relocate(ckpt: Checkpoint, work: Path, final: Path) -> Checkpoint:
    def move(p: str | None) -> str | None:
        if p is None:
            return None
        path = Path(p)
        try:
            return str(final / path.relative_to(work))
        except ValueError:
            return p

    return attrs.evolve(ckpt, path=move(ckpt.path), adapter_path=move(ckpt.adapter_path))
