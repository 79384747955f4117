"""ladder against its peers, side by side in one run: a plain TRL script and LLaMA-Factory.

    PYTHONPATH=$PWD/src python bench/peers.py [--out runs/peers] [--llamafactory-python PATH]

Each tool trains SFT and DPO with a LoRA from the same model folder (the demo's embedded
SmolLM2-135M-Instruct, float32), on the same rows (the demo's shipped data, read at run time),
with the same LoRA, steps, batch, learning rate, schedule, seed and fp32 precision
(``bench/peers_setup.py`` holds them once). Every training runs in its own subprocess, one after
the other, interleaved by stage (ladder SFT, TRL SFT, LLaMA-Factory SFT, then DPO likewise);
then one more subprocess (``bench/peers_eval.py``) merges each adapter into the base and
measures the held-out result with one ladder function for all. The table goes to stdout and,
with every number behind it, to ``<out>/peers.json``.

Columns: *train s* is the Trainer's own ``train_runtime`` (inside ``trainer.train()``, the
same clock in all three); *stage s* is the tool's whole stage: ladder's from the run manifest
(build the trainer, train, merge, verify the merge, save, observe: ladder's default probes;
behaviour suites off), TRL's from loading the model to the adapter saved, LLaMA-Factory's the CLI
process; *process s* is each subprocess's wall time, imports included, with its CPU time.

LLaMA-Factory runs in its own virtual environment (its pins differ from ladder's)::

    python3 -m venv /work/venvs/llamafactory
    /work/venvs/llamafactory/bin/pip install torch==2.13.0          # the CPU build
    /work/venvs/llamafactory/bin/pip install -c <(echo torch==2.13.0) llamafactory==0.9.5
    # pip picks CUDA-linked torchvision/torchaudio builds that fail against the CPU torch, and
    # LLaMA-Factory imports torchaudio unconditionally (audio models): remove torchvision and
    # leave an empty torchaudio package in that venv only.
    /work/venvs/llamafactory/bin/pip uninstall -y torchvision torchaudio
    SP=$(/work/venvs/llamafactory/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    mkdir -p $SP/torchaudio && touch $SP/torchaudio/__init__.py

Pass its interpreter with ``--llamafactory-python`` (or ``LADDER_BENCH_LLAMAFACTORY_PYTHON``);
without one, or when it cannot import ``llamafactory``, that column is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers_setup as setup  # noqa: E402

DEFAULT_LLAMAFACTORY = Path("/work/venvs/llamafactory/bin/python")
TOOLS = ("ladder", "trl", "llamafactory")
_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


# --------------------------------------------------------------------------- processes


def run_process(cmd: Sequence[str], log: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Run ``cmd`` with its output in ``log``; its exit code, wall and CPU seconds, peak RSS."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(list(cmd), stdout=handle, stderr=subprocess.STDOUT, env=dict(env))
        _pid, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own peak RSS and CPU time
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "process_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "load_before": load, "load_after": os.getloadavg()[0], "log": str(log)}


def _failed(what: str, proc: Mapping[str, Any]) -> RuntimeError:
    tail = "\n".join(Path(proc["log"]).read_text(errors="replace").splitlines()[-25:])
    return RuntimeError(f"{what} exited with status {proc['rc']}; the end of {proc['log']}:\n{tail}")


def from_history(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Steps, train seconds, step times, tokens and losses from a Trainer's log history.

    Every step's log carries ``train_runtime`` (seconds since training started, logged with
    ``include_num_input_tokens_seen``), so a step's time is the difference from the step before;
    the first step's includes the warm-up (first allocations, the optimizer's state).
    """
    steps = [r for r in history if "loss" in r and isinstance(r.get("train_runtime"), (int, float))]
    elapsed = [float(r["train_runtime"]) for r in steps]
    step_s = [b - a for a, b in zip([0.0, *elapsed], elapsed)]
    final = next((r for r in reversed(history) if "train_loss" in r), {})
    later = step_s[1:]
    return {"steps": max((int(r.get("step", 0)) for r in history), default=0), "train_s": final.get("train_runtime"),
            "step_s": step_s, "median_step_s": statistics.median(later) if later else None,
            "loss_first": steps[0]["loss"] if steps else None, "loss_last": steps[-1]["loss"] if steps else None,
            "tokens": int(steps[-1]["num_input_tokens_seen"]) if steps else None}


# --------------------------------------------------------------------------- the columns


def run_ladder(stage: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``ladder run`` of a one-stage recipe: train, merge, verify, publish, observe."""
    work = ctx["out"] / f"ladder-{stage}"
    recipe = setup.ladder_recipe(stage, model=ctx["model"], data_dir=ctx["data_dir"], run_dir=work / "run")
    path = work / "recipe.yaml"
    path.write_text(json.dumps(recipe, indent=2))  # JSON is YAML
    proc = run_process([sys.executable, "-m", "ladder.cli", "run", str(path)], work / "log.txt", ctx["env"])
    if proc["rc"] != 0:
        raise _failed(f"ladder {stage}", proc)
    manifest = json.loads((work / "run" / "manifest.json").read_text())
    entry = manifest["stages"][0]
    stage_dir = work / "run" / entry["dir"]
    history = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines() if line]
    metrics = entry["metrics"]
    return {**proc, **from_history(history), "stage_s": entry["duration_s"], "fit_s": metrics["train"]["runtime_s"],
            "ladder_train_tokens": metrics["train"].get("train_tokens"), "adapter": str(stage_dir / "adapter"),
            "merge": {k: v for k, v in metrics["stage_metrics"].items() if k.startswith("merge")}}


def run_trl(stage: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``bench/peers_trl.py``: SFTTrainer/DPOTrainer + PEFT, as a TRL user writes it."""
    work = ctx["out"] / f"trl-{stage}"
    spec = work / "spec.json"
    spec.write_text(json.dumps(setup.trl_spec(stage, model=ctx["model"], data_dir=ctx["data_dir"], out_dir=work)))
    proc = run_process([sys.executable, str(BENCH / "peers_trl.py"), str(spec), str(work / "result.json")],
                       work / "log.txt", ctx["env"])
    if proc["rc"] != 0:
        raise _failed(f"TRL {stage}", proc)
    result = json.loads((work / "result.json").read_text())
    return {**proc, **from_history(result["history"]), "stage_s": result["stage_s"], "fit_s": result["train_s"],
            "adapter": result["adapter"]}


def run_llamafactory(stage: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``llamafactory-cli train`` on a config and dataset written from the shared settings."""
    work = ctx["out"] / f"llamafactory-{stage}"
    rows = setup.read_jsonl(ctx["data_dir"] / setup.SETTINGS[stage]["data"])
    cfg = setup.write_llamafactory_inputs(stage, rows, work, model=ctx["model"], default_system=ctx["system"])
    proc = run_process([ctx["llamafactory"], "-m", "llamafactory.cli", "train", str(cfg)], work / "log.txt",
                       ctx["env"])
    if proc["rc"] != 0:
        raise _failed(f"LLaMA-Factory {stage}", proc)
    state = json.loads((work / "output" / "trainer_state.json").read_text())
    return {**proc, **from_history(state["log_history"]), "stage_s": proc["process_s"], "fit_s": None,
            "adapter": str(work / "output")}


RUNNERS = {"ladder": run_ladder, "trl": run_trl, "llamafactory": run_llamafactory}


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    """CPU model, core count, native bf16, memory, load average, and the versions in ladder's env."""
    cpu = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "memory_gib": round(mem, 1), "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "versions": {p: metadata.version(p) for p in ("ladder", *_PACKAGES)}}


def llamafactory_versions(python: str | None) -> tuple[dict[str, str] | None, str | None]:
    """The versions in LLaMA-Factory's venv, or why that column cannot run."""
    if not python:
        return None, "no LLaMA-Factory interpreter (pass --llamafactory-python)"
    if not Path(python).exists():
        return None, f"{python} does not exist (see this script's docstring for the venv)"
    code = ("import json, importlib.metadata as m, llamafactory; "
            f"print(json.dumps({{p: m.version(p) for p in {('llamafactory', *_PACKAGES)!r}}}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None, f"{python} cannot import llamafactory: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


# --------------------------------------------------------------------------- the table


def _held_out(stage: str, ev: Mapping[str, Any]) -> str:
    if stage == "sft":
        v = ev["verifiable"]
        return f"format {v['format_rate']:.0%}, exact {v['exact_match']:.0%} (n={v['n']})"
    p = ev["preference"]
    implicit = f", implicit vs base {p['implicit_accuracy']:.0%}" if "implicit_accuracy" in p else ""
    return f"pref. acc. {p['accuracy']:.1%}{implicit} (n={p['n']})"


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None) -> str:
    head = ("| tool | stage | steps | train s | median step s | stage s | process s (CPU s) | tokens | tokens/s "
            "| loss first → last | peak RSS MB | held-out |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    if base is not None:
        lines.append(f"| base model | – | – | – | – | – | – | – | – | – | – | {_held_out('sft', base)}; "
                     f"{_held_out('dpo', base)} |")
    for r in rows:
        rate = r["tokens"] / r["train_s"] if r.get("tokens") and r.get("train_s") else None
        loss = f"{_num(r['loss_first'], '.3f')} → {_num(r['loss_last'], '.3f')}"
        lines.append(f"| {r['tool']} | {r['stage']} | {r['steps']} | {_num(r['train_s'], '.1f')} | "
                     f"{_num(r['median_step_s'], '.2f')} | {_num(r['stage_s'], '.1f')} | "
                     f"{r['process_s']:.1f} ({r['cpu_s']:.0f}) | "
                     f"{_num(r['tokens'], 'd')} | {_num(rate, '.0f')} | {loss} | {r['peak_rss_mb']:.0f} | "
                     f"{_held_out(r['stage'], r['eval']) if r.get('eval') else '–'} |")
    return "\n".join(lines)


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """ladder's training part against TRL's and LLaMA-Factory's, per stage."""
    out = []
    for stage in setup.STAGES:
        by = {r["tool"]: r for r in rows if r["stage"] == stage}
        if "ladder" not in by:
            continue
        for peer in ("trl", "llamafactory"):
            if peer in by and by[peer].get("train_s"):
                ratio = by["ladder"]["train_s"] / by[peer]["train_s"]
                text = f"{stage}: ladder / {peer}: train {ratio:.3f} ({ratio - 1:+.1%})"
                if by["ladder"].get("median_step_s") and by[peer].get("median_step_s"):
                    step = by["ladder"]["median_step_s"] / by[peer]["median_step_s"]
                    text += f", median step {step:.3f} ({step - 1:+.1%})"
                out.append(text)
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/peers", help="work directory (emptied first)")
    parser.add_argument("--llamafactory-python", default=os.environ.get("LADDER_BENCH_LLAMAFACTORY_PYTHON") or (
        str(DEFAULT_LLAMAFACTORY) if DEFAULT_LLAMAFACTORY.exists() else None),
        help="the python of LLaMA-Factory's venv (default $LADDER_BENCH_LLAMAFACTORY_PYTHON, else "
             f"{DEFAULT_LLAMAFACTORY} when it exists)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ", ".join(TOOLS))
    parser.add_argument("--quick", type=int, metavar="STEPS", help="smoke run: STEPS steps per stage, 8 held-out rows")
    args = parser.parse_args(argv)
    if args.quick:
        for stage in setup.STAGES:
            setup.SETTINGS[stage]["max_steps"] = args.quick

    from ladder.demo.model import demo_model_path
    from transformers import AutoTokenizer

    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}")
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    info = machine()
    lf_versions, why = llamafactory_versions(args.llamafactory_python) if "llamafactory" in tools else (None, None)
    if why:
        print(f"LLaMA-Factory column skipped: {why}", flush=True)
        tools.remove("llamafactory")
    info["llamafactory_versions"] = lf_versions
    model = str(demo_model_path())  # fetched and converted once; every tool trains from this folder
    tokenizer = AutoTokenizer.from_pretrained(model)
    system = setup.default_system_prompt(tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                                                       tokenize=False))
    import ladder.demo

    data_dir = Path(ladder.demo.__file__).parent / "data"  # read at run time: the lead may regenerate it
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parent / "src"), os.environ.get("PYTHONPATH")]))}
    ctx = {"out": out, "model": model, "data_dir": data_dir, "env": env, "system": system,
           "llamafactory": args.llamafactory_python}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for stage in setup.STAGES:
        for tool in tools:
            (out / f"{tool}-{stage}").mkdir(parents=True)
            print(f"{tool} {stage} ...", flush=True)
            record = {"tool": tool, "stage": stage, **RUNNERS[tool](stage, ctx)}
            print(f"  train {record['train_s']:.1f} s, process {record['process_s']:.1f} s, load "
                  f"{record['load_before']:.2f} -> {record['load_after']:.2f}", flush=True)
            rows.append(record)
    print("held-out evaluation ...", flush=True)
    job = {"base": model, "rows": {k: 8 for k in setup.STAGES} if args.quick else setup.SETTINGS["eval_rows"], "work": str(out / "eval"), "generation": setup.SETTINGS["generation"],
           "eval": {k: str(data_dir / v) for k, v in setup.SETTINGS["eval"].items()},
           "outputs": [{"tool": r["tool"], "stage": r["stage"], "adapter": r["adapter"]} for r in rows]}
    (out / "eval").mkdir()
    (out / "eval" / "job.json").write_text(json.dumps(job, indent=2))
    proc = run_process([sys.executable, str(BENCH / "peers_eval.py"), str(out / "eval" / "job.json"),
                        str(out / "eval" / "result.json")], out / "eval" / "log.txt", env)
    if proc["rc"] != 0:
        raise _failed("the held-out evaluation", proc)
    evaluated = json.loads((out / "eval" / "result.json").read_text())
    for row, ev in zip(rows, evaluated["outputs"], strict=True):
        row["eval"], row["eval_s"] = ev["eval"], ev["seconds"]
    info["load_average_end"] = os.getloadavg()
    text = table(rows, evaluated["base"])
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, avx512_bf16 {'yes' if info['avx512_bf16'] else 'no'}, "
             f"{info['memory_gib']} GiB; load average {info['load_average'][0]:.2f} at the start, "
             f"{info['load_average_end'][0]:.2f} at the end",
             "ladder env: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
             ("LLaMA-Factory env: " + ", ".join(f"{k} {v}" for k, v in lf_versions.items())) if lf_versions else
             "LLaMA-Factory: skipped", "", text, "", *ratios(rows),
             f"whole bench {time.perf_counter() - started:.0f} s (evaluation {proc['process_s']:.0f} s)"]
    report = "\n".join(lines)
    print("\n" + report)
    (out / "peers.md").write_text(report + "\n")
    (out / "peers.json").write_text(json.dumps({"machine": info, "settings": setup.SETTINGS, "rows": rows,
                                                "base": evaluated["base"], "evaluation": proc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
