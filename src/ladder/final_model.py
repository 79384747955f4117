"""The one merged model of a ``merge: final`` run: ``final/model``.

Under ``merge: final`` every adapter stage keeps only its adapter, so the last stage's checkpoint
is a chain: the full weights it started from and the adapters of the stages before it and its
own. The pipeline merges that chain once, when every stage has run, into ``<run_dir>/final``
(published atomically, with a ``COMPLETE`` marker holding the last stage's fingerprint, so a
re-run with nothing changed reuses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ladder.atomic import atomic_dir, atomic_write_json
from ladder.checkpoint import Checkpoint
from ladder.layout import FINAL_DIR, METRICS, MODEL_DIR

__all__ = ["write_final_model"]


def write_final_model(
    run_dir: str | Path,
    last: Checkpoint,
    options: Mapping[str, Any] | None,
    manifest: Any = None,
    *,
    reused: Checkpoint | None = None,
) -> Checkpoint:
    """``last``'s adapters merged into ``run_dir/final/model`` (or ``reused``, a complete earlier one).

    ``final/metrics.json`` and the manifest's ``final`` section get ``merge_max_abs_diff`` (one
    per adapter, see :func:`ladder.training.publish.merge_checkpoint`) and ``disk_bytes``.

    Returns:
        ``last`` with its weights at ``final/model`` and no adapters.
    """
    from ladder.observation import read_metrics
    from ladder.training.publish import merge_checkpoint

    final_dir = Path(run_dir) / FINAL_DIR
    if reused is not None:
        merged, metrics = reused, read_metrics(final_dir)
    else:
        marker: dict[str, Any] = {"fingerprint": last.fingerprint}  # written last, by atomic_dir
        with atomic_dir(final_dir, replace=True, info=marker) as work:
            merged, metrics = merge_checkpoint(last, work, options)
            merged = attrs.evolve(merged, path=str(final_dir / MODEL_DIR))
            metrics = {"stage": last.stage, "adapters": list(last.adapters), **metrics}
            atomic_write_json(work / METRICS, metrics)
            marker["checkpoint"] = merged.to_dict()
    if manifest is not None:
        manifest.data["final"] = {"checkpoint": merged.to_dict(), "metrics": metrics}
        manifest.save()
    return merged
