"""Two runs never share a directory, a SIGTERM leaves a run resumable, a stage is on disk before
its COMPLETE marker, and no credential reaches a file or a log: real `ladder run` processes on
the tiny model, with the stage in a worker process (``executor: subprocess``).

One module fixture runs, once:

1. an uninterrupted run in this process (``ladder.cli.main``), spying on ``os.fsync``;
2. ``ladder run`` as a process (P1) in another run directory; once it has a trainer checkpoint,
   P1 and its worker are frozen (SIGSTOP) so the next step happens while P1 holds the lock;
3. a second ``ladder run`` process (P2) on P1's directory, which must exit 2 naming P1's pid;
4. SIGTERM to P1 (then SIGCONT), which must stop its worker and record the stage as interrupted;
5. the same command again, in this process, which must resume and give the uninterrupted
   run's weights, byte for byte.

Every run has a token in ``HF_TOKEN``, one in ``options: {hf_token: ...}`` and one inside a URL
in the recipe (``trainer_kwargs.run_name``, which nothing fetches); the tests look for them in
every file of both run directories, in the worker's spec and in everything the runs logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cli import main

ROWS = [{"instruction": f"What is {a} + {b}?", "output": f"<answer>{a + b}</answer>"} for a in range(4) for b in range(4)]
STEPS = 8
SECRETS = {"HF_TOKEN": "hf_" + "EnvTok3n" * 4, "options.hf_token": "hf_" + "OptTok3n" * 4,
           "URL password": "hf_" + "UrlTok3n" * 4}
TIMEOUT_S = 300


def write_recipe(root: Path, model: Path, run_dir: Path) -> Path:
    recipe = root / f"{run_dir.name}.yaml"
    recipe.write_text(
        f"name: safety\nmodel: {model}\nrun_dir: {run_dir}\nprobes: false\nexecutor: subprocess\n"
        f"options: {{hf_token: {SECRETS['options.hf_token']}}}\n"
        "stages:\n  - stage: sft\n    dataset: sft.jsonl\n"
        f"    max_steps: {STEPS}\n    save_steps: 1\n    per_device_train_batch_size: 4\n    learning_rate: 0.005\n"
        "    trainer_kwargs: {"
        f"run_name: \"https://user:{SECRETS['URL password']}@host/data.jsonl\"}}\n"
    )
    return recipe


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    """Everything this process logs and prints while the body runs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    level = logging.getLogger("ladder").level
    logging.getLogger("ladder").setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield out
    finally:
        root.removeHandler(handler)
        logging.getLogger("ladder").setLevel(level)


def worker_pids(run_dir: Path) -> list[int]:
    """Live stage-worker processes working in ``run_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"ladder.executors.worker" in cmdline and any(str(run_dir).encode() in a for a in cmdline) and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition: Any, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert proc.poll() is None, f"P1 exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".trainer/sft-*/checkpoint-*/trainer_state.json"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("safety")
    (root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    env = {**os.environ, "HF_TOKEN": SECRETS["HF_TOKEN"], "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    seen: dict[str, Any] = {"root": root, "logs": {}}

    # 1. Uninterrupted, in this process, watching what is fsynced.
    reference = root / "reference"
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as mp, captured() as out:
        mp.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
        mp.setattr(os, "fsync", spy)
        seen["reference_exit"] = main(["run", str(write_recipe(root, tiny_model, reference))])
    seen.update(reference=reference, synced=synced)
    seen["logs"]["reference run"] = out.getvalue()

    # 2. P1, frozen once it has a trainer checkpoint.
    run_dir = root / "run"
    recipe = write_recipe(root, tiny_model, run_dir)
    p1_log = root / "p1.log"
    with open(p1_log, "wb") as log:
        p1 = subprocess.Popen([sys.executable, "-m", "ladder.cli", "run", str(recipe)], stdout=log,
                              stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        wait_for(lambda: complete_checkpoints(run_dir) and worker_pids(run_dir), "a trainer checkpoint", p1, p1_log)
        (worker,) = worker_pids(run_dir)
        os.killpg(worker, signal.SIGSTOP)  # the worker's process group: it and anything it started
        os.kill(p1.pid, signal.SIGSTOP)
        seen["lock_while_running"] = json.loads((run_dir / ".lock").read_text())
        seen["spec"] = "".join(p.read_text() for p in run_dir.glob(".executor/*/SPEC.json"))

        # 3. A second run on the same directory.
        p2 = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(recipe)], capture_output=True,
                            text=True, env=env, cwd=root, timeout=TIMEOUT_S, check=False)
        seen.update(p2_exit=p2.returncode, p2_stderr=p2.stderr)
        seen["logs"]["second run"] = p2.stdout + p2.stderr

        # 4. SIGTERM to P1 (delivered once it runs again).
        os.kill(p1.pid, signal.SIGTERM)
        os.kill(p1.pid, signal.SIGCONT)
        os.killpg(worker, signal.SIGCONT)
        seen["p1_exit"] = p1.wait(timeout=TIMEOUT_S)
    finally:
        if p1.poll() is None:
            p1.kill()
    seen.update(p1_pid=p1.pid, worker=worker, workers_after=worker_pids(run_dir))
    seen["logs"]["interrupted run"] = p1_log.read_text()
    seen["manifest_after_sigterm"] = json.loads((run_dir / "manifest.json").read_text())
    seen["checkpoints_after_sigterm"] = [p.parent.name for p in complete_checkpoints(run_dir)]
    seen["published_after_sigterm"] = sorted(p.name for p in run_dir.iterdir())
    seen["files_after_sigterm"] = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    # 5. The same command again.
    with pytest.MonkeyPatch.context() as mp, captured() as out:
        mp.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
        seen["rerun_exit"] = main(["run", str(recipe)])
    seen["logs"]["resumed run"] = out.getvalue()
    seen["run_dir"] = run_dir
    return seen


def test_a_second_run_on_the_directory_exits_2_naming_the_first(runs: dict[str, Any]) -> None:
    assert runs["lock_while_running"]["pid"] == runs["p1_pid"]
    assert runs["p2_exit"] == 2, runs["p2_stderr"]
    assert f"is in use by another ladder run (pid {runs['p1_pid']} on" in runs["p2_stderr"]
    assert "Traceback" not in runs["p2_stderr"]


def test_sigterm_stops_the_worker_and_leaves_the_run_resumable(runs: dict[str, Any]) -> None:
    assert runs["p1_exit"] == 128 + signal.SIGTERM, runs["logs"]["interrupted run"][-3000:]
    assert "interrupted by SIGTERM; run the same command again to resume" in runs["logs"]["interrupted run"]
    assert runs["workers_after"] == [] and not Path(f"/proc/{runs['worker']}").exists()
    manifest = runs["manifest_after_sigterm"]
    assert manifest["status"] == "interrupted" and manifest["stages"][0]["status"] == "interrupted"
    assert runs["checkpoints_after_sigterm"], "the trainer checkpoints were removed"
    assert "01-sft" not in runs["published_after_sigterm"]
    assert not [n for n in runs["published_after_sigterm"] if ".tmp-" in n]


def test_the_resumed_run_has_the_uninterrupted_weights(runs: dict[str, Any]) -> None:
    assert runs["reference_exit"] == 0 and runs["rerun_exit"] == 0, runs["logs"]["resumed run"][-3000:]
    run_dir, reference = runs["run_dir"], runs["reference"]
    assert "resuming" in runs["logs"]["resumed run"]
    steps = [json.loads(line)["step"] for line in (run_dir / "01-sft" / "trainer_log.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, STEPS + 1)) and len([s for s in steps if s < STEPS]) == STEPS - 1
    model = Path("01-sft") / "model" / "model.safetensors"
    assert sha256(run_dir / model) == sha256(reference / model)
    assert json.loads((run_dir / "manifest.json").read_text())["attempts"] == 2
    assert (run_dir / ".lock").read_text() == ""  # released


def test_every_file_of_the_stage_is_synced_before_its_marker(runs: dict[str, Any]) -> None:
    synced = runs["synced"]
    marker = next(i for i, p in enumerate(synced) if p.endswith("/COMPLETE") and "/01-sft.tmp-" in p)
    work = Path(synced[marker]).parent
    before = set(synced[:marker])
    published = runs["reference"] / "01-sft"
    files = [p.relative_to(published) for p in published.rglob("*") if p.name != "COMPLETE"]
    assert {"model/model.safetensors", "adapter/adapter_model.safetensors", "metrics.json",
            "trainer_log.jsonl"} <= {str(f) for f in files}
    unsynced = [str(f) for f in files if str(work / f) not in before]
    assert unsynced == [], f"written into the stage but not synced before COMPLETE: {unsynced}"
    assert str(work) in before


def test_no_token_reaches_a_file_or_a_log(runs: dict[str, Any]) -> None:
    places: dict[str, bytes] = {}
    for run_dir in (runs["reference"], runs["run_dir"]):
        places.update({str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()})
    # While interrupted, the trainer checkpoints are there too; TRL's own pickle of its arguments
    # (training_args.bin) holds trainer_kwargs as given, which ladder cannot reach (see
    # docs/reliability.md), so it is the one file left out.
    places.update({f"{p} (after SIGTERM)": data for p, data in runs["files_after_sigterm"].items()
                   if p.name != "training_args.bin"})
    places.update({f"log of the {name}": text.encode() for name, text in runs["logs"].items()})
    places["SPEC.json of the interrupted run"] = runs["spec"].encode()
    assert any(name.endswith("README.md") for name in places) and runs["spec"]
    for what, secret in SECRETS.items():
        leaks = [name for name, data in places.items() if secret.encode() in data]
        assert leaks == [], f"the {what} token is written in {leaks}"
    # Not vacuous: the secrets were there to leak, and were masked or sealed.
    assert "@@LADDER_SECRET_" in runs["spec"]
    card = (runs["reference"] / "01-sft" / "model" / "README.md").read_text()
    assert '"run_name": "https://user:***@host/data.jsonl"' in card
    manifest = json.loads((runs["reference"] / "manifest.json").read_text())
    assert manifest["settings"]["options"] == {"hf_token": "***"}
