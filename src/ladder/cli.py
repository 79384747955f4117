"""The ``ladder`` command line. Heavy libraries are imported only by the commands that need them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, DataError, LadderError, MissingDependencyError, PluginLoadError, RunInUseError
from ladder.executors import EXECUTORS

__all__ = ["main", "build_parser", "cpu_thread_defaults"]

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
    from ladder.redaction import RedactingFilter

    handler.addFilter(RedactingFilter())  # no credential reaches a terminal or a log file
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ladder").setLevel(level)
    if not debug:  # third-party chatter (progress bars, deprecation notes) stays out of the way
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


def _cmd_list(registry_name: str) -> int:
    from rich.console import Console

    from ladder.listing import components_table

    Console(width=max(100, Console().width)).print(components_table(registry_name))
    return 0


def _cmd_show_stage(name: str) -> int:
    from ladder.listing import stage_settings

    print(stage_settings(name))
    return 0


def _load(args: argparse.Namespace) -> Any:
    from ladder.recipe import load_recipe

    return load_recipe(args.recipe, overrides=getattr(args, "overrides", None) or (),
                       run_dir=getattr(args, "run_dir", None), executor=getattr(args, "executor", None))


def _cmd_validate(args: argparse.Namespace) -> int:
    pipeline = _load(args)
    pipeline.validate()
    names = " -> ".join(f"{s.name}({s.kind})" for s in pipeline.stages)
    with_overrides = f" (with {' '.join(args.overrides)})" if args.overrides else ""
    print(f"OK: {args.recipe}{with_overrides}: {len(pipeline.stages)} stage(s): {names}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from ladder.hub import push, push_settings

    settings = push_settings({"repo_id": args.repo_id})
    assert settings is not None
    result = push(args.run_dir, args.stage, repo_id=settings.repo_id, private=args.private,
                  adapter_only=args.adapter_only, license=args.license)
    print(f"pushed to {result.repo_id}: {result.commit_url}\n  " + "\n  ".join(result.files))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ladder.progress import ProgressDisplay

    pipeline = _load(args)
    with ProgressDisplay() as display:
        result = pipeline.run(force=args.force, from_stage=args.from_stage, progress=display)
        display.summary(_summary_rows(result.run_dir))
    print(f"final checkpoint: {result.final.path}")
    for stage in _manifest(result.run_dir).get("stages", []):
        if (stage.get("push") or {}).get("commit_url"):
            print(f"pushed {stage['name']} to {stage['push']['repo_id']}: {stage['push']['commit_url']}")
    if result.report:
        print(f"report: {result.report}")
    return 0


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _summary_rows(run_dir: Path) -> list[dict[str, Any]]:
    manifest = _manifest(run_dir)
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

    overrides = ("KEY=VALUE overrides of the recipe: stages.sft.learning_rate=1e-4 (a stage by name), "
                 "stages.1.beta=0.2 (by 0-based index), stages.sft.lora.r=16, model=ORG/NAME, seed=1; "
                 "values are YAML")
    p = sub.add_parser("run", help="run a recipe (skips stages whose complete output exists)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides)
    p.add_argument("--run-dir", help="override the recipe's run directory")
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="re-run STAGE and every stage after it")
    p.add_argument("--executor", choices=EXECUTORS, help="where stages run")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="pre-flight a recipe: names, configs, every dataset row")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("stages", help="list installed stages; `ladder stages show NAME` lists a stage's settings")
    p.set_defaults(func=lambda a: _cmd_list("stages"))
    show = p.add_subparsers(dest="stages_command", metavar="show").add_parser(
        "show", help="every setting of a stage: type, default and help")
    show.add_argument("name", help="the stage's registry name (ladder stages lists them)")
    show.set_defaults(func=lambda a: _cmd_show_stage(a.name))
    p = sub.add_parser("rewards", help="list installed rewards (name, package, version)")
    p.set_defaults(func=lambda a: _cmd_list("rewards"))

    p = sub.add_parser("push", help="push a stage's merged model (or adapter) and model card to the Hugging Face hub")
    p.add_argument("run_dir", help="the run directory (runs/<name>)")
    p.add_argument("stage", nargs="?", help="the stage to push (default: the run's last stage)")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the hub repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--adapter-only", action="store_true", help="push the LoRA adapter, not the merged model")
    p.add_argument("--license", help="the model card's license (default: the base model folder's card's)")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("report", help="(re)write report.html and report.md for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)

    from ladder.chat import add_chat_arguments, chat_command  # light: no torch
    from ladder.serve import add_serve_arguments, serve_command  # light: no torch, starlette or uvicorn

    p = sub.add_parser("chat", help="chat with a checkpoint in the terminal",
                       description="Chat with a checkpoint, decoded as the run's probes are. "
                       "/reset starts over, /exit (or end of input) quits.")
    add_chat_arguments(p)
    p.set_defaults(func=chat_command)

    p = sub.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible API (vLLM on a GPU, else ladder's server)",
                       description="Serve a checkpoint over an OpenAI-compatible chat API (streaming, API key, "
                       "request limits): vLLM on a GPU, else ladder's server on transformers. See docs/serving.md.")
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


#: commands that run a model, for which the CLI looks at how busy the CPUs are before torch loads
_MODEL_COMMANDS = frozenset({"run", "demo", "chat", "serve"})

#: spin iterations of an idle libgomp thread before it sleeps, on a machine otherwise idle
QUIET_SPINCOUNT = "10000"


def other_cpu_load(interval: float = 0.1) -> float | None:
    """How many CPUs other processes keep busy now (from ``/proc/stat`` over ``interval`` s), or ``None``."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):  # not Linux, or /proc unreadable
        return None
    elapsed = total1 - total0
    if elapsed <= 0:
        return None
    return (os.cpu_count() or 1) * (elapsed - (idle1 - idle0)) / elapsed


def cpu_thread_defaults(command: str | None = None, busy: float | None = None) -> None:
    """Settings for torch's CPU threads, made before torch is imported (call it first).

    libgomp, torch's OpenMP runtime on Linux, keeps each idle thread spinning on a CPU for a
    while (300,000 iterations) after every parallel region. On a machine where other processes
    compete for the cores (a laptop, a shared box), a spinning thread holds the core its partner
    needs, and each of the thousands of small parallel regions of a decoding step waits for a
    time slice: with one other busy process on 2 cores (docs/benchmarks.md), the demo's
    generation took 7x and a LoRA step 8x as long as with passive waiting. On an otherwise idle
    machine the opposite holds: a sleeping thread's wake-up is paid in every region, and a short
    spin (``GOMP_SPINCOUNT=10000``) made both 0.77x of passive waiting, while costing 1.5x, not
    7x, when a busy process turns up later.

    So for a command that runs a model the CLI measures, for 0.1 s, how many CPUs other processes
    keep busy (:func:`other_cpu_load`): under a third of one, idle threads spin briefly; otherwise,
    and for every other command, they sleep at once (``OMP_WAIT_POLICY=PASSIVE``). Results are
    the same either way (this schedules threads; it changes no arithmetic). A value of either
    variable set in the environment wins (``OMP_WAIT_POLICY=PASSIVE`` on a shared machine,
    ``ACTIVE`` on a dedicated one).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if command in _MODEL_COMMANDS:
        if busy is None:
            busy = other_cpu_load()
        if busy is not None and busy < 1 / 3:
            os.environ["GOMP_SPINCOUNT"] = QUIET_SPINCOUNT
            return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _version() -> str:
    from ladder import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after options (`ladder run r.yaml --force a=1 b=2`): argparse leaves
    # the ones after an option unparsed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    cpu_thread_defaults(getattr(args, "command", None))
    _setup_logging(args.verbose, args.debug)
    logging.getLogger(__name__).debug("CPU threads: OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s",
                                      os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
    from ladder.cpu_allocator import keep_freed_memory

    keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during `ladder run` (ladder.runlock.Interrupted)
        signum = int(getattr(exc, "signum", 2))
        print(f"{str(exc) or 'interrupted'}; run the same command again to resume", file=sys.stderr)
        return 128 + signum
    except LadderError as exc:
        if args.debug:
            raise
        # Exit 2: the recipe, the data or the installed packages need fixing, or another run holds
        # the run directory (nothing trained, or nothing more will until they are); exit 1: a
        # stage failed while running.
        user = (ConfigError, DataError, LookupError, PluginLoadError, MissingDependencyError, RunInUseError)
        code = EXIT_USER_ERROR if isinstance(exc, user) else EXIT_FAILURE
        from ladder.redaction import redact_text

        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        if code == EXIT_FAILURE:
            print("(run with --debug for the full traceback)", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
