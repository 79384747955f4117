"""Several GPUs (or CPU processes) per stage: the stage worker under ``accelerate launch``.

``AccelerateExecutor(num_processes=4, config="zero2")`` runs
``python -m accelerate.commands.launch --config_file <profile> --num_processes 4 -m
ladder.executors.worker SPEC.json``. The profiles are the ones TRL ships
(``trl/accelerate_configs/*.yaml``), chosen by name:

========== ===========================================================================
multi_gpu  DDP: one full model replica per GPU (the default; fits when the model fits)
zero1..3   DeepSpeed ZeRO stage 1/2/3 (``pip install deepspeed``): optimizer state,
           then gradients, then the weights themselves sharded across GPUs
fsdp1/2    PyTorch FSDP (version 1 or 2): weights sharded across GPUs
========== ===========================================================================

or a path to an accelerate config file of your own. Every process runs the same stage;
the trainer splits the batches between them, and only the main process saves, merges,
verifies and writes the result (see :func:`ladder.training.fit.main_process_model`).

On a machine without a GPU (or with ``cpu=True``) the processes are CPU processes joined by
gloo (``accelerate launch --multi_gpu`` with ``ACCELERATE_USE_CPU=true``: accelerate's ``--cpu``
flag alone starts a single process unless an MPI hostfile is given). That is slow, but it runs
the real multi-process path, which is how ladder's tests check it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ladder.errors import ConfigError, MissingDependencyError
from ladder.executors.process import WORKER_MODULE, run_worker

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext, StageResult

__all__ = ["AccelerateExecutor", "TRL_PROFILES", "profile_path"]

logger = logging.getLogger(__name__)

#: The accelerate profiles TRL ships, by name.
TRL_PROFILES = ("multi_gpu", "single_gpu", "zero1", "zero2", "zero3", "fsdp1", "fsdp2")


def profile_path(config: str | os.PathLike[str]) -> Path:
    """The accelerate config file for a TRL profile name, or ``config`` itself when it is a file.

    Raises:
        ConfigError: neither a known profile nor an existing file.
    """
    name = os.fspath(config)
    if name in TRL_PROFILES:
        spec = importlib.util.find_spec("trl")  # locate TRL without importing it
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("trl", package="trl")
        path = Path(list(spec.submodule_search_locations)[0]) / "accelerate_configs" / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"TRL's accelerate profile {name!r} is missing ({path}); reinstall trl, or pass the path "
                f"of an accelerate config file as config="
            )
        return path
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"accelerate config {name!r} is neither one of TRL's profiles ({', '.join(TRL_PROFILES)}) "
            f"nor an existing file; write one with `accelerate config --config_file FILE`"
        )
    return path


class AccelerateExecutor:
    """Runs each stage with ``accelerate launch`` over several processes (``executor: accelerate``).

    Args:
        num_processes: processes to launch, one per GPU (or CPU processes on CPU).
        config: a TRL profile name (``multi_gpu``, ``zero1``/``zero2``/``zero3``, ``fsdp1``/``fsdp2``)
            or the path of an accelerate config file.
        cpu: run CPU processes joined by gloo even when GPUs are present (plain DDP; the
            DeepSpeed and FSDP profiles need GPUs). Without a GPU this is automatic.
        mixed_precision: ``"bf16"``, ``"fp16"`` or ``"no"``; default: the profile's (TRL's say
            bf16), fp16 on GPUs without bf16, ``"no"`` on CPU.
        main_process_port: the rendezvous port; 0 picks a free one.
        env: extra environment variables for the processes.
        extra_args: more ``accelerate launch`` arguments, placed before the worker module.
    """

    name = "accelerate"

    def __init__(
        self,
        num_processes: int = 2,
        config: str = "multi_gpu",
        cpu: bool = False,
        mixed_precision: str | None = None,
        main_process_port: int = 0,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not isinstance(num_processes, int) or num_processes < 1:
            raise ConfigError(f"accelerate executor: num_processes must be a positive integer, got {num_processes!r}")
        if mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ConfigError(f"accelerate executor: mixed_precision must be no, fp16 or bf16, got {mixed_precision!r}")
        self.num_processes = num_processes
        self.config = str(config)
        self.config_file = profile_path(config)  # fail at construction, before anything trains
        self.cpu = bool(cpu)
        self.mixed_precision = mixed_precision
        self.main_process_port = int(main_process_port)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.extra_args = [str(a) for a in extra_args]

    def _uses_cpu(self) -> bool:
        if self.cpu:
            return True
        import torch

        return not torch.cuda.is_available()

    def launch_args(self, *, cpu: bool | None = None, gpus: int | None = None) -> tuple[list[str], dict[str, str]]:
        """The ``accelerate launch`` arguments (before the script) and the environment it needs.

        Args:
            cpu: force the CPU (``True``) or GPU (``False``) form; default: detect.
            gpus: visible GPUs, to check ``num_processes`` against; default: detect.

        Raises:
            ConfigError: a DeepSpeed/FSDP profile on CPU, or more processes than GPUs.
            MissingDependencyError: a DeepSpeed profile without ``deepspeed`` installed.
        """
        cpu = self._uses_cpu() if cpu is None else cpu
        name = self.config
        sharded = name.startswith(("zero", "fsdp"))
        args = [sys.executable, "-m", "accelerate.commands.launch"]
        env = dict(self.env)
        if cpu:
            if sharded:
                raise ConfigError(
                    f"accelerate executor: the {name} profile needs GPUs; on CPU only plain data parallelism "
                    f"(config: multi_gpu) is available"
                )
            if name not in TRL_PROFILES:
                logger.warning("accelerate executor on CPU: ignoring the config file %s (plain DDP over gloo)", name)
            # `--cpu` alone starts one process; `--multi_gpu` starts N via torchrun, and
            # ACCELERATE_USE_CPU makes each a CPU process (MULTI_CPU, gloo).
            if self.num_processes > 1:
                args += ["--multi_gpu"]
            args += ["--num_processes", str(self.num_processes), "--num_machines", "1",
                     "--mixed_precision", self.mixed_precision or "no", "--dynamo_backend", "no"]
            env.update({"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""})
        else:
            if name.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
                raise MissingDependencyError(f"deepspeed (for the {name} profile)", package="deepspeed")
            if gpus is None:
                import torch

                gpus = torch.cuda.device_count()
            if gpus and self.num_processes > gpus:
                raise ConfigError(
                    f"accelerate executor: num_processes={self.num_processes} but only {gpus} GPU(s) are "
                    f"visible; use at most {gpus}, or cpu: true"
                )
            config_file = self.config_file
            if self.num_processes == 1 and name == "multi_gpu":
                config_file = profile_path("single_gpu")  # DDP refuses a single process
            args += ["--config_file", str(config_file), "--num_processes", str(self.num_processes)]
            precision = self.mixed_precision or self._gpu_precision()
            if precision:
                args += ["--mixed_precision", precision]
        args += ["--main_process_port", str(self.main_process_port), *self.extra_args]
        return args, env

    @staticmethod
    def _gpu_precision() -> str | None:
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            return "fp16"  # TRL's profiles ask for bf16, which these GPUs lack
        return None

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        launch, env = self.launch_args()
        where = f"accelerate launch ({self.num_processes} {'CPU processes' if self._uses_cpu() else 'GPUs'}, {self.config})"
        return run_worker(
            stage,
            checkpoint,
            ctx,
            command=lambda spec: [*launch, "-m", WORKER_MODULE, str(spec)],
            env=env,
            where=where,
        )

    def __repr__(self) -> str:
        return f"AccelerateExecutor(num_processes={self.num_processes}, config={self.config!r}, cpu={self.cpu})"
