"""A stage's trainer log kept beside its resumable state, so a crash loses none of it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ladder.atomic import atomic_write_text
from ladder.layout import TRAINER_LOG

__all__ = ["TrainerJournal"]

logger = logging.getLogger(__name__)


class TrainerJournal:
    """A stage's trainer log kept beside its resumable state, so a crash loses none of it.

    The stage writes ``trainer_log.jsonl`` into its temp dir, which a crash leaves behind as an
    incomplete leftover (removed by the next run) and an exception removes at once. This keeps a
    copy at ``<trainer_dir>/trainer_log.jsonl``: every record is appended to it as it is logged
    (through ``ctx.on_log``, which every executor calls), and on an exception the temp dir's own
    file replaces it. When the stage later resumes from trainer checkpoint ``checkpoint-N``, the
    records up to step ``N`` seed the new attempt's log, so the published log is whole; records
    after ``N`` are dropped because those steps are trained again.
    """

    NAME = TRAINER_LOG

    def __init__(self, trainer_dir: Path) -> None:
        self.path = trainer_dir / self.NAME

    def start(self, work: Path) -> None:
        """Seed ``work/trainer_log.jsonl`` with the records the resumed attempt will not repeat."""
        from ladder.training.fit import last_complete_trainer_checkpoint

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
            atomic_write_text(self.path, source.read_text(encoding="utf-8"))
        except OSError:
            logger.warning("could not keep the trainer log of the failed stage at %s", self.path, exc_info=True)
