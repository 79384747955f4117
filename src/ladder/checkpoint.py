"""The :class:`Checkpoint` value: a full model a stage starts from or produces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import attrs

__all__ = ["Checkpoint", "CheckpointKind", "fingerprint_of"]

CheckpointKind = Literal["policy", "reward"]


def fingerprint_of(*parts: Any) -> str:
    """A stable hex fingerprint of JSON-able parts (order matters)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A model: where its weights live and where it came from.

    Usually a full (merged) model at ``path``. Under ``merge: final`` a stage that trained an
    adapter keeps only the adapter, and its checkpoint is the full weights at ``path`` with
    ``adapters`` to apply and merge, in order (:func:`ladder.training.models.load_model` does);
    the tokenizer is then the last adapter's folder's (:attr:`tokenizer_path`).

    A stage never mutates its input checkpoint; it returns a new one whose ``parent`` is the
    input. Walking ``parent`` gives the lineage back to the base model.

    Attributes:
        path: a local directory holding a full model in safetensors, or a hub id.
        stage: the pipeline name of the stage that produced it (``"base"`` for the base).
        kind: ``"policy"`` (a causal LM) or ``"reward"`` (a sequence classifier, scalar head).
        parent: the checkpoint it was trained from (``None`` for the base).
        fingerprint: identifies the content: for the base, derived from ``path`` and
            ``revision``; for a stage output, from its input, config, data and versions.
        revision: hub revision, for hub ids.
        chat_template: the chat template the tokenizer carries (``None`` when unknown yet).
        eos_token_ids: token ids that end a turn in generation.
        adapter_path: the LoRA adapter the stage trained, kept beside the merged model.
        adapters: adapter folders applied, in order, to the weights at ``path`` to make this
            model (``merge: final``); empty for a full model.
    """

    path: str
    stage: str = "base"
    kind: CheckpointKind = attrs.field(
        default="policy", validator=attrs.validators.in_(("policy", "reward"))
    )
    parent: Checkpoint | None = None
    fingerprint: str = ""
    revision: str | None = None
    chat_template: str | None = attrs.field(default=None, repr=False)
    eos_token_ids: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    adapter_path: str | None = None
    adapters: tuple[str, ...] = attrs.field(default=(), converter=lambda v: tuple(str(a) for a in v))

    def __attrs_post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint_of("base", self.path, self.revision))

    @classmethod
    def base(cls, path: str | Path, *, revision: str | None = None) -> Checkpoint:
        """The starting checkpoint: a hub id or a local model directory."""
        return cls(path=str(path), stage="base", revision=revision)

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    @property
    def tokenizer_path(self) -> str:
        """Where the tokenizer lives: the last adapter's folder for a chain of adapters, else ``path``."""
        return self.adapters[-1] if self.adapters else self.path

    def lineage(self) -> Iterator[Checkpoint]:
        """This checkpoint, then its parent, … back to the base."""
        node: Checkpoint | None = self
        while node is not None:
            yield node
            node = node.parent

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; the parent is referenced by fingerprint and stage name."""
        return {
            "path": self.path,
            "stage": self.stage,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "revision": self.revision,
            "eos_token_ids": list(self.eos_token_ids),
            "adapter_path": self.adapter_path,
            **({"adapters": list(self.adapters)} if self.adapters else {}),
            "parent": None
            if self.parent is None
            else {"stage": self.parent.stage, "fingerprint": self.parent.fingerprint},
            "lineage": [c.stage for c in self.lineage()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, parent: Checkpoint | None = None) -> Checkpoint:
        return cls(
            path=data["path"],
            stage=data.get("stage", "base"),
            kind=data.get("kind", "policy"),
            fingerprint=data.get("fingerprint", ""),
            revision=data.get("revision"),
            eos_token_ids=tuple(data.get("eos_token_ids") or ()),
            adapter_path=data.get("adapter_path"),
            adapters=tuple(data.get("adapters") or ()),
            parent=parent,
        )
