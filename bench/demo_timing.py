"""Time `ladder demo` by stage and record peak memory.

    python bench/demo_timing.py [--run-dir runs/bench-demo] [--markdown]

Runs the demo in a child process (model fetch/convert excluded when cached), then reads the run's
manifest for per-stage durations and the child's peak RSS from getrusage. Prints a Markdown table
row set for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/bench-demo")
    parser.add_argument("--keep", action="store_true", help="reuse an existing run directory")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    if run_dir.exists() and not args.keep:
        shutil.rmtree(run_dir)
    # warm the model cache first so fetch/convert is not counted
    subprocess.run([sys.executable, "-c", "from ladder.demo.model import demo_model_path; demo_model_path()"],
                   check=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ladder.cli", "demo", "--run-dir", str(run_dir)])
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((run_dir / "manifest.json").read_text())
    print(f"\nmachine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    print("versions: " + ", ".join(f"{p} {metadata.version(p)}" for p in ("ladder", "torch", "transformers", "trl",
                                                                            "peft")))
    print(f"exit code {proc.returncode}; wall {wall:.0f} s; peak RSS {peak_mb:.0f} MB\n")
    print("| stage | seconds (train + probes + evals) |")
    print("|---|---|")
    for s in manifest["stages"]:
        print(f"| {s['name']} | {s.get('duration_s') or 0:.0f} |")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
