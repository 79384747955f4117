"""The ``ladder`` command line. Heavy libraries are imported only by the commands that need them."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, DataError, LadderError, MissingDependencyError, PluginLoadError
from ladder.executors import EXECUTORS

__all__ = ["main", "build_parser"]

logger = logging.getLogger("ladder")

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1


def _setup_logging(verbose: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose or sys.stderr.isatty() else logging.WARNING
    level = logging.INFO if level == logging.WARNING else level
    root = logging.getLogger()
    if root.handlers:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=debug, rich_tracebacks=debug, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ladder").setLevel(level)
    if not debug:  # third-party chatter (progress bars, deprecation notes) stays out of the way
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


def _doc_line(value: str, _depth: int = 0) -> str:
    """First docstring line of ``module:attr`` read from source with ``ast`` (no import)."""
    module, _, attr = value.partition(":")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ""
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == attr:
            doc = ast.get_docstring(node) or ""
            return doc.strip().splitlines()[0] if doc.strip() else ""
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == attr for a in node.names):
            if _depth >= 3:
                return ""
            source = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module if spec.submodule_search_locations else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                source = f"{package}.{source}" if source else package
            name = next(a.name for a in node.names if (a.asname or a.name) == attr)
            return _doc_line(f"{source}:{name}", _depth + 1)
    return ""


def _cmd_list(registry_name: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from ladder import registry

    reg = getattr(registry, registry_name)
    table = Table(title=f"ladder {registry_name}", title_justify="left")
    for col in ("name", "package", "version", "description"):
        table.add_column(col)
    for entry in reg.entries():
        table.add_row(entry.name, entry.package, entry.version, _doc_line(entry.value))
    Console(width=max(100, Console().width)).print(table)
    return 0


def _load(args: argparse.Namespace) -> Any:
    from ladder.recipe import load_recipe

    return load_recipe(args.recipe, run_dir=getattr(args, "run_dir", None), executor=getattr(args, "executor", None))


def _cmd_validate(args: argparse.Namespace) -> int:
    pipeline = _load(args)
    pipeline.validate()
    names = " -> ".join(f"{s.name}({s.kind})" for s in pipeline.stages)
    print(f"OK: {args.recipe}: {len(pipeline.stages)} stage(s): {names}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ladder.progress import ProgressDisplay

    pipeline = _load(args)
    with ProgressDisplay() as display:
        result = pipeline.run(force=args.force, from_stage=args.from_stage, progress=display)
        display.summary(_summary_rows(result.run_dir))
    print(f"final checkpoint: {result.final.path}")
    if result.report:
        print(f"report: {result.report}")
    return 0


def _summary_rows(run_dir: Path) -> list[dict[str, Any]]:
    import json

    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    rows = []
    base = manifest.get("base", {}).get("metrics")
    if base:
        rows.append({"stage": "base", "status": "-", **_flat(base)})
    for s in manifest.get("stages", []):
        rows.append({"stage": s["name"], "status": s.get("status"), **_flat(s.get("metrics") or {})})
    return rows


# The terminal summary's columns: (metrics.json path, column title). Headline numbers only:
# each is measured on every model, the base included (see ladder.report.metrics).
_SUMMARY_COLUMNS = (
    ("behaviour.knowledge", "knowledge"),
    ("behaviour.instructions", "instructions"),
    ("behaviour.refusal", "refusal"),
    ("behaviour.over_refusal", "over-refusal"),
    ("behaviour.arithmetic", "arithmetic"),
    ("eval.preference.accuracy_per_token", "pref. acc./token"),
    ("eval.verifiable.exact_match", "exact match"),
    ("behaviour.stop_rate", "stop rate"),
    ("eval.rm_accuracy", "rm accuracy"),  # reward-model stages only
)


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a stage's metrics.json, one level deep, rates as percentages.

    A behaviour rate that regressed against the stage's input is marked ``▼``; the stage's
    ``regressions`` list is passed on for the summary to spell out.
    """
    out: dict[str, Any] = {}
    regressed = {r.get("metric") for r in metrics.get("regressions") or [] if isinstance(r, dict)}
    for path, title in _SUMMARY_COLUMNS:
        node: Any = metrics
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get("rate") if isinstance(node, dict) else node
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[title] = f"{value * 100:.1f}%" + (" ▼" if path in regressed else "")
    train = metrics.get("train") or {}
    if "loss_last" in train:
        out["last loss"] = train["loss_last"]
    if isinstance(metrics.get("regressions"), list):
        out["regressions"] = metrics["regressions"]
    return out


def _cmd_report(args: argparse.Namespace) -> int:
    from ladder.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(f"{run_dir}: not a ladder run directory (no manifest.json)")
    paths = write_report(run_dir)
    print(f"report: {paths.html}\n        {paths.md}")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from ladder.chat import chat_loop
    from ladder.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    chat_loop(args.checkpoint, settings=settings, options={"trust_remote_code": args.trust_remote_code})
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ladder.demo import RECIPE, export

    if args.export:
        target = export(args.export)
        print(f"wrote {target} and its data; edit it, then: ladder run {target}")
        return 0
    from ladder.demo.model import demo_model_path
    from ladder.progress import ProgressDisplay
    from ladder.recipe import load_recipe

    model = args.model
    if model is None:
        model = str(demo_model_path(progress=lambda line: logger.info("%s", line)))
    pipeline = load_recipe(RECIPE, model=model, run_dir=args.run_dir)
    if args.quick:  # a smoke run: a few steps per stage
        for stage in pipeline.stages:
            stage.config = type(stage.config)(**{**_fields(stage.config), "max_steps": args.quick})
    with ProgressDisplay() as display:
        result = pipeline.run(force=args.force, progress=display)
        display.summary(_summary_rows(result.run_dir))
    print(f"\nreport: {result.report}")
    print(f"final checkpoint: {result.final.path}   (try: ladder chat {result.final.path})")
    print(f"recipe: {RECIPE}   (ladder demo --export DIR to copy and edit it)")
    return 0


def _fields(config: Any) -> dict[str, Any]:
    import attrs

    return {f.name: getattr(config, f.name) for f in attrs.fields(type(config))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladder",
        description="Take a language model up the post-training ladder (SFT -> DPO -> GRPO) "
        "and watch it change at every rung.",
    )
    parser.add_argument("--version", action="version", version=f"ladder {_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a recipe (skips stages whose complete output exists)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--run-dir", help="override the recipe's run directory")
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="re-run STAGE and every stage after it")
    p.add_argument("--executor", choices=EXECUTORS, help="where stages run")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="pre-flight a recipe: names, configs, every dataset row")
    p.add_argument("recipe")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("stages", help="list installed stages (name, package, version)")
    p.set_defaults(func=lambda a: _cmd_list("stages"))
    p = sub.add_parser("rewards", help="list installed rewards (name, package, version)")
    p.set_defaults(func=lambda a: _cmd_list("rewards"))

    p = sub.add_parser("report", help="(re)write report.html and report.md for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("chat", help="chat with a checkpoint in the terminal")
    p.add_argument("checkpoint", help="a model folder (e.g. runs/x/01-sft/model) or hub id")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible API (vLLM on a GPU, else ladder's server)")
    from ladder.serve import add_serve_arguments, serve_command

    add_serve_arguments(p)
    p.set_defaults(func=serve_command)

    p = sub.add_parser("demo", help="the whole ladder on a small real model, offline, on CPU, in minutes")
    p.add_argument("--model", help="hub id or local folder instead of the embedded SmolLM2-135M-Instruct")
    p.add_argument("--run-dir", default=None, help="where to write the run (default: runs/demo)")
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--quick", type=int, metavar="STEPS", help="smoke run: only STEPS optimizer steps per stage")
    p.add_argument("--export", metavar="DIR", help="copy the demo recipe and data to DIR and exit")
    p.set_defaults(func=_cmd_demo)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


_EXTRA_COMMANDS: list[Any] = []


def _version() -> str:
    from ladder import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _setup_logging(args.verbose, args.debug)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except LadderError as exc:
        if args.debug:
            raise
        # Exit 2: the recipe, the data or the installed packages need fixing (nothing trained,
        # or nothing more will until they are); exit 1: a stage failed while running.
        user = (ConfigError, DataError, LookupError, PluginLoadError, MissingDependencyError)
        code = EXIT_USER_ERROR if isinstance(exc, user) else EXIT_FAILURE
        print(f"error: {exc}", file=sys.stderr)
        if code == EXIT_FAILURE:
            print("(run with --debug for the full traceback)", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
