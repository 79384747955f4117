"""ladder's training part against the plain TRL script's, paired in one process (A B A B ...).

    PYTHONPATH=$PWD/src python bench/peers_ab.py [sft|dpo] [--steps 3] [--rounds 2]

On a machine shared with other jobs, runs minutes apart see different loads; here the two
trainers (built as in `bench/peers_diff.py`) train alternately in one process, each round with the
same number of steps, so both see the same conditions. Prints each run's wall and CPU seconds of
``trainer.train()`` and the ratios. A later round trains an adapter that already moved, at the same
cost per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers_setup as setup  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", default="sft", choices=setup.STAGES)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ladder.demo
    from ladder.demo.model import demo_model_path

    import peers_diff
    import peers_trl

    setup.SETTINGS[args.stage]["max_steps"] = args.steps
    model = str(demo_model_path())
    data_dir = Path(ladder.demo.__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            "ladder": peers_diff.ladder_trainer(args.stage, model, data_dir, Path(tmp) / "ladder"),
            "trl": peers_trl.build_trainer(setup.trl_spec(args.stage, model=model, data_dir=data_dir,
                                                          out_dir=Path(tmp) / "trl")),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}
        for k in range(args.rounds):
            order = list(trainers) if k % 2 == 0 else list(reversed(trainers))
            for name in order:
                wall, cpu = time.perf_counter(), time.process_time()
                trainers[name].train()
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                print(f"round {k + 1} {name}: {times[name][-1][0]:.1f} s wall, {times[name][-1][1]:.1f} s CPU",
                      flush=True)
    for i, what in enumerate(("wall", "CPU")):
        a = statistics.median(t[i] for t in times["ladder"])
        b = statistics.median(t[i] for t in times["trl"])
        print(f"{args.stage} {what}: ladder {a:.1f} s, TRL {b:.1f} s (medians of {args.rounds}), "
              f"ladder / TRL = {a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
