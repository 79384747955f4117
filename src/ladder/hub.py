"""Publishing a stage's checkpoint to the Hugging Face hub: :func:`push` and the recipe's ``push:``.

What is uploaded, in one commit: the stage's merged model (``model/``: safetensors weights,
config, tokenizer, chat template, generation config) or, with ``adapter_only``, its LoRA
adapter (``adapter/``) with the tokenizer, chat template and generation config; and a model card
(``README.md``, :mod:`ladder.card`) written from the run's manifest: hub metadata
(``base_model``, ``datasets``, ``license``, ``tags``, ``pipeline_tag``, ``model-index``), the
lineage with every stage's headline numbers, the stage's settings. No local path and no
credential is written into any uploaded file.

The token is ``huggingface_hub``'s: ``HF_TOKEN`` or the login saved by ``hf auth login``; the
endpoint is ``HF_ENDPOINT`` (or ``endpoint=``).
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.errors import ConfigError, LadderError
from ladder.layout import ADAPTER_DIR, COMPLETE, MANIFEST, MODEL_DIR

__all__ = ["PushError", "PushResult", "PushSettings", "push", "push_problems", "push_settings", "push_stage",
           "raise_push_failures"]

logger = logging.getLogger(__name__)

_REPO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDERS = ("stage", "run")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".index.json")
_NO_TOKEN = "no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login`"


class PushError(LadderError, RuntimeError):
    """Uploading a checkpoint to the hub failed (the run itself is complete)."""


def _stage_names(value: Any) -> Any:
    if isinstance(value, str) and value not in ("final", "all"):
        return (value,)  # one stage, by name
    return tuple(value) if isinstance(value, list) else value


@attrs.frozen(kw_only=True)
class PushSettings:
    """The recipe's ``push:``: which stages go to which hub repository, after they are published.

    Attributes:
        repo_id: ``org/name`` (or ``name``, in your namespace); may hold ``{stage}`` and ``{run}``,
            and must hold ``{stage}`` when several stages are pushed (one repository per stage).
        stages: ``final`` (the last stage), ``all``, or a list of stage names.
        private: create the repository private (else the hub's default visibility).
        adapter_only: push the LoRA adapter instead of the merged model.
        license: the card's ``license`` (default: the base model's, when its folder's card says).
    """

    repo_id: str = attrs.field(validator=attrs.validators.instance_of(str))
    stages: str | tuple[str, ...] = attrs.field(default="final", converter=_stage_names)
    private: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    adapter_only: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    license: str | None = attrs.field(default=None)

    @stages.validator
    def _stages(self, _attr: Any, value: Any) -> None:
        if value not in ("final", "all") and not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"push.stages: give final, all or a list of stage names, got {value!r}")

    def __attrs_post_init__(self) -> None:
        fields = {f for _, f, _, _ in string.Formatter().parse(self.repo_id) if f is not None}
        bad = sorted(fields - set(_PLACEHOLDERS))
        if bad:
            raise ConfigError(f"push.repo_id {self.repo_id!r}: unknown placeholder(s) {bad}; use {{stage}} or {{run}}")
        if not _REPO.match(self.repo_id.replace("{stage}", "x").replace("{run}", "x")):
            raise ConfigError(f"push.repo_id {self.repo_id!r}: give a hub repository id, org/name (letters, digits, "
                              "'-', '_', '.')")

    def selected(self, names: Sequence[str]) -> list[str]:
        """The stage names pushed, in pipeline order."""
        if self.stages == "final":
            return list(names[-1:])
        if self.stages == "all":
            return list(names)
        return [n for n in names if n in self.stages]

    def repo_for(self, stage: str, run: str) -> str:
        return self.repo_id.format(stage=stage, run=run)


def push_settings(value: Any) -> PushSettings | None:
    """:class:`PushSettings` from a recipe's ``push:`` (a mapping, or the repo id alone).

    Raises:
        ConfigError: an unknown key or a bad value, named.
    """
    if value is None or isinstance(value, PushSettings):
        return value
    if isinstance(value, str):
        value = {"repo_id": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"push: give a mapping like {{repo_id: org/name, stages: final}}, got {type(value).__name__}")
    known = {f.name for f in attrs.fields(PushSettings)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"push: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    if "repo_id" not in value:
        raise ConfigError("push: `repo_id` is required (org/name)")
    try:
        return PushSettings(**value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"push: {exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc}") from None


def push_problems(settings: PushSettings | None, stages: Sequence[Any]) -> list[str]:
    """Pre-flight of ``push:``: the stages it names exist, one repository per stage, an adapter
    to push, and a token to push with; and no stage asks its trainer to push (``push_to_hub``
    uploads the trainer's intermediate adapter checkpoints, not the published model)."""
    pushing = [s.name for s in stages if (getattr(s.config, "trainer_kwargs", None) or {}).get("push_to_hub")]
    problems = [f"stage {name!r}: trainer_kwargs.push_to_hub would upload the trainer's intermediate checkpoints, "
                "not the merged model ladder publishes; remove it and use the recipe's push: {repo_id: org/name} "
                "(or ladder push RUN_DIR --repo-id org/name)" for name in pushing]
    if settings is None:
        return problems
    names = [s.name for s in stages]
    if isinstance(settings.stages, tuple):
        missing = [n for n in settings.stages if n not in names]
        if missing:
            problems.append(f"push.stages: no stage {', '.join(map(repr, missing))}; stages: {', '.join(names)}")
    selected = settings.selected(names)
    if len(selected) > 1 and "{stage}" not in settings.repo_id:
        problems.append(f"push: {len(selected)} stages go to one repository {settings.repo_id!r}; add {{stage}} to "
                        f"repo_id (e.g. {settings.repo_id}-{{stage}}) or push only the final stage")
    if settings.adapter_only:
        full = [s.name for s in stages if s.name in selected and getattr(s.config, "finetuning", "lora") == "full"]
        if full:
            problems.append(f"push.adapter_only: stage(s) {', '.join(full)} train every weight (finetuning: full) "
                            "and have no adapter; push the merged model (adapter_only: false)")
    from huggingface_hub import get_token

    if get_token() is None:
        problems.append(f"push: {_NO_TOKEN}")
    return problems


@attrs.frozen
class PushResult:
    """What :func:`push` uploaded: the repository, the commit and the files (paths in the repo)."""

    repo_id: str
    commit_url: str
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "commit_url": self.commit_url, "files": list(self.files)}


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{run_dir}: not a ladder run directory (no readable {MANIFEST})") from None


def _entry(manifest: Mapping[str, Any], run_dir: Path, stage: str | None) -> dict[str, Any]:
    entries = list(manifest.get("stages") or [])
    names = [e.get("name") for e in entries]
    if stage is None:
        if not entries:
            raise ConfigError(f"{run_dir}: the run has no stages")
        entry = entries[-1]
    elif stage in names:
        entry = entries[names.index(stage)]
    else:
        raise ConfigError(f"{run_dir}: no stage {stage!r}; stages: {', '.join(map(str, names))}")
    if not (run_dir / str(entry.get("dir")) / COMPLETE).is_file():
        raise ConfigError(f"{run_dir}: stage {entry['name']!r} is not complete (status {entry.get('status')!r}); "
                          f"run it first: ladder run <recipe>")
    return entry


def _lineage(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> list[Any]:
    from ladder.card import CardStage, describe_source
    from ladder.registry import stages as stage_registry

    by_name = {e.get("name"): e for e in manifest.get("stages") or []}
    chain: list[Any] = []
    node: Mapping[str, Any] | None = entry
    while node is not None and len(chain) <= len(by_name):
        try:
            config_cls = stage_registry.get(str(node.get("kind"))).Config
        except LadderError:  # a plugin not installed here: its datasets stay undescribed
            config_cls = None
        chain.append(CardStage.of_stage(str(node["name"]), str(node.get("kind")), str(node.get("fingerprint") or ""),
                                        config_cls, node.get("config") or {}, node.get("metrics") or {}))
        node = by_name.get(node.get("input"))
    base = manifest.get("base") or {}
    model = (manifest.get("recipe") or {}).get("model")
    source = f"ladder's embedded {model[len('ladder:'):]}" if str(model).startswith("ladder:") else describe_source(
        base.get("path"))
    chain.append(CardStage(name="base", kind="base", fingerprint=str(base.get("fingerprint") or ""), source=source,
                           metrics=base.get("metrics") or {}))
    return chain[::-1]


def _files(stage_dir: Path, adapter_only: bool) -> dict[str, Path]:
    """Repo path -> local file: the model folder, or the adapter with the tokenizer and templates."""
    folder = stage_dir / (ADAPTER_DIR if adapter_only else MODEL_DIR)
    if not folder.is_dir():
        what = "an adapter (it trained every weight)" if adapter_only else "a model folder"
        raise ConfigError(f"{stage_dir}: has no {what}; nothing to push")
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    if adapter_only:
        model = stage_dir / MODEL_DIR
        for p in sorted(model.iterdir()) if model.is_dir() else ():
            if p.is_file() and p.name != "config.json" and not p.name.endswith(_WEIGHTS):
                files.setdefault(p.name, p)
    files.pop("README.md", None)  # replaced by the card
    return files


def _adapter_config(path: Path, base_model: str | None) -> bytes:
    """The adapter's config pointing at the hub base model instead of a local folder."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


def push(
    run_dir: str | Path,
    stage: str | None = None,
    *,
    repo_id: str,
    private: bool = False,
    adapter_only: bool = False,
    license: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Push one published stage of a run to the hub (see the module docs for what is uploaded).

    Args:
        run_dir: the run directory.
        stage: the stage's name (default: the run's last stage).
        repo_id: the hub repository (``org/name``); created when missing.
        private: create it private.
        adapter_only: push the LoRA adapter instead of the merged model.
        license: the card's ``license`` (default: the base model folder's card's, if any).
        token: a hub token (default: ``HF_TOKEN`` or the saved login); never written anywhere.
        endpoint: the hub's URL (default: ``HF_ENDPOINT`` or huggingface.co).

    Raises:
        ConfigError: not a run directory, no such complete stage, nothing to push, or no token.
        PushError: the hub refused or could not be reached.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    from ladder.card import hub_id, render_card
    from ladder.training.publish import local_license

    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    entry = _entry(manifest, run_dir, stage)
    if token is None and get_token() is None:
        raise ConfigError(f"cannot push {entry['name']!r}: {_NO_TOKEN}")
    stage_dir = run_dir / str(entry["dir"])
    files = _files(stage_dir, adapter_only)
    lineage = _lineage(manifest, entry)
    base_path = (manifest.get("base") or {}).get("path")
    base_model = hub_id(base_path)
    notes = []
    if adapter_only and entry.get("input") not in (None, "base"):
        notes.append(f"This adapter applies to the merged output of stage `{entry.get('input')}`, not to the base "
                     "model; push that stage too to load it.")
        adapter_base = None
    else:
        adapter_base = base_model
    checkpoint = (json.loads((stage_dir / COMPLETE).read_text(encoding="utf-8")).get("checkpoint") or {})
    card = render_card(lineage, title=repo_id, base_model=adapter_base if adapter_only else base_model,
                       license=license or (local_license(base_path) if isinstance(base_path, str) else None),
                       kind=str(checkpoint.get("kind") or "policy"), adapter=adapter_only,
                       eval_sources=(manifest.get("recipe") or {}).get("evals") or {}, notes=notes)
    operations = []
    for name, path in files.items():
        content: Any = str(path)
        if adapter_only and name == "adapter_config.json":
            content = _adapter_config(path, adapter_base)
        operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=content))
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    api = HfApi(endpoint=endpoint, token=token)
    what = "adapter" if adapter_only else "model"
    try:
        api.create_repo(repo_id, private=private or None, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id, operations=operations, repo_type="model",
                                 commit_message=f"ladder: {what} of stage {entry['name']} of run "
                                                f"{manifest.get('run_name')} ({entry.get('fingerprint')})")
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise PushError(f"pushing stage {entry['name']!r} to {repo_id} failed: {exc}") from exc
    logger.info("pushed %s of %s to %s (%d files): %s", what, entry["name"], repo_id, len(operations), info.commit_url)
    return PushResult(repo_id, str(info.commit_url), tuple(sorted(op.path_in_repo for op in operations)))


def push_stage(settings: PushSettings | None, names: Sequence[str], run_dir: Path, stage: str, *,
               run_name: str) -> dict[str, Any] | None:
    """Push one published stage if ``push:`` selects it among the pipeline's ``names``, for the
    pipeline: what was pushed, or the error (with the command that pushes it again) under
    ``"error"``; ``None`` when the stage is not pushed. Never raises for a failed upload."""
    if settings is None or stage not in settings.selected(names):
        return None
    repo = settings.repo_for(stage, run_name)
    try:
        result = push(run_dir, stage, repo_id=repo, private=settings.private, adapter_only=settings.adapter_only,
                      license=settings.license)
    except LadderError as exc:
        logger.error("could not push stage %s to %s: %s", stage, repo, exc)
        return {"repo_id": repo, "error": f"{exc} (push it again with: ladder push {run_dir} {stage} --repo-id {repo}"
                                          f"{' --adapter-only' if settings.adapter_only else ''})"}
    return result.to_dict()


def raise_push_failures(run_dir: Path, failures: Sequence[str]) -> None:
    """Raise :class:`PushError` listing the pushes that failed in a run that is otherwise complete."""
    if failures:
        raise PushError(f"the run is complete ({run_dir}), but pushing to the hub failed:\n"
                        + "\n".join(f"  - {f}" for f in failures))
