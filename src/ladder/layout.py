"""Every name in a run directory, in one place.

```
runs/<name>/
  manifest.json                 MANIFEST
  .lock                         LOCK: held by the one `ladder run` using the directory (pid, host, start)
  00-base/                      BASE_DIR: probes.jsonl, metrics.json, COMPLETE
  01-sft/                       stage_dir_name(1, "sft")
    model/  adapter/            MODEL_DIR, ADAPTER_DIR
    metrics.json probes.jsonl   METRICS, PROBES
    trainer_log.jsonl           TRAINER_LOG
    COMPLETE                    COMPLETE (written last; holds the fingerprint and the checkpoint)
  01-sft.tmp-XXXXXXXX/          a stage being written (TMP_INFIX), published by one rename
  01-sft.tmp-old-<pid>/         a published stage moved aside while its replacement is renamed in
  .manifest.json.tmp-XXXXXXXX   a file being written, published by one os.replace
  final/model/                  FINAL_DIR: the one merged model of a `merge: final` run
  .trainer/<stage>-<fp>/        resumable trainer checkpoints (trainer_dir)
  .executor/<stage>-<fp>/       a worker's SPEC.json / RESULT.json / ERROR.json (executor_dir)
  report.html report.md plots/
  tensorboard/<stage>/          TENSORBOARD_DIR: event files of `report_to: tensorboard`
```
Only this module spells these names; the pipeline, the executors, the report and the tools
read them from here.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "ADAPTER_DIR",
    "BASE_DIR",
    "COMPLETE",
    "EXECUTOR_DIR",
    "LOCK",
    "FINAL_DIR",
    "MANIFEST",
    "METRICS",
    "MODEL_DIR",
    "PROBES",
    "REPORT_HTML",
    "REPORT_MD",
    "PLOTS_DIR",
    "TENSORBOARD_DIR",
    "TMP_INFIX",
    "TRAINER_DIR",
    "TRAINER_LOG",
    "executor_dir",
    "is_leftover_name",
    "is_stage_dir_name",
    "leftover_of",
    "slug",
    "stage_dir_name",
    "trainer_dir",
]

MANIFEST = "manifest.json"
LOCK = ".lock"
BASE_DIR = "00-base"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
METRICS = "metrics.json"
PROBES = "probes.jsonl"
TRAINER_LOG = "trainer_log.jsonl"
COMPLETE = "COMPLETE"
#: What a directory or file being written carries in its name until its one publishing rename.
TMP_INFIX = ".tmp-"
TRAINER_DIR = ".trainer"
#: Under ``merge: final``: the last stage's adapters merged into one model (``final/model``).
FINAL_DIR = "final"
EXECUTOR_DIR = ".executor"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
TENSORBOARD_DIR = "tensorboard"

_STAGE_DIR = re.compile(r"^\d{2,}-.+$")
# Exactly the names ladder's temp entries get: tempfile.mkdtemp/mkstemp append 8 characters of
# [a-z0-9_] to the prefix "<name>.tmp-" (or "<name>.tmp-<purpose>-"), and atomic_dir moves a
# replaced directory aside as "<name>.tmp-old-<pid>". A name that merely holds ".tmp-"
# (a stage once called "sft.tmp-v2") is none of these.
_LEFTOVER = re.compile(r"^(?P<name>.+?)\.tmp-(?:(?P<old>old-\d+)|(?:[a-z]+-)?[a-z0-9_]{8})$")


def slug(text: str, empty: str = "x") -> str:
    """``text`` as a piece of a file name or an id: every run of characters other than letters,
    digits, ``.``, ``_`` and ``-`` becomes one ``-``; ``empty`` when nothing is left.

    >>> slug("03 grpo/math"), slug("//", empty="run")
    ('03-grpo-math', 'run')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or empty


def stage_dir_name(index: int, name: str) -> str:
    """``01-sft``: a stage's directory, by its 1-based position and its name."""
    return f"{index:02d}-{name}"


def is_stage_dir_name(name: str) -> bool:
    """Whether ``name`` is a stage's (or the base's) published directory name."""
    return bool(_STAGE_DIR.match(name)) and TMP_INFIX not in name


def leftover_of(name: str) -> tuple[str, bool] | None:
    """``(the published name, whether it was moved aside)`` when ``name`` is a temp entry ladder
    created (see above), else ``None``.

    Example:
        >>> leftover_of("01-sft.tmp-k2j_x9qa"), leftover_of("01-sft.tmp-old-4242"), leftover_of("01-sft.tmp-v2")
        (('01-sft', False), ('01-sft', True), None)
    """
    match = _LEFTOVER.match(name)
    if match is None:
        return None
    return match["name"], match["old"] is not None


def is_leftover_name(name: str) -> bool:
    """Whether ``name`` is a temp entry of an unfinished write (:func:`leftover_of`)."""
    return leftover_of(name) is not None


def trainer_dir(run_dir: str | Path, stage_name: str, fingerprint: str) -> Path:
    """Where one attempt of a stage keeps its resumable trainer checkpoints."""
    return Path(run_dir) / TRAINER_DIR / f"{stage_name}-{fingerprint or 'unfingerprinted'}"


def executor_dir(run_dir: str | Path, stage_name: str, fingerprint: str) -> Path:
    """Where a worker process's spec and result for one stage attempt live."""
    return Path(run_dir) / EXECUTOR_DIR / f"{stage_name}-{fingerprint or 'unfingerprinted'}"
