"""Datasets: loading from files, lists, ``datasets.Dataset`` or the hub, and row validation."""

from ladder.data.loading import DatasetSpec, content_hash, load_rows

__all__ = ["DatasetSpec", "content_hash", "load_rows"]
