"""Choosing an executor, and the ``accelerate launch`` command lines the accelerate executor builds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ladder.errors import ConfigError, MissingDependencyError
from ladder.executors import EXECUTORS, LocalExecutor, get_executor
from ladder.executors.accelerate import TRL_PROFILES, AccelerateExecutor, profile_path
from ladder.executors.process import SubprocessExecutor


def test_get_executor_by_name_mapping_or_instance() -> None:
    assert isinstance(get_executor(None), LocalExecutor)
    assert isinstance(get_executor("local"), LocalExecutor)
    sub = get_executor({"name": "subprocess", "env": {"OMP_NUM_THREADS": 1}})
    assert isinstance(sub, SubprocessExecutor) and sub.env == {"OMP_NUM_THREADS": "1"}
    acc = get_executor({"name": "accelerate", "num_processes": 4, "config": "fsdp2"})
    assert isinstance(acc, AccelerateExecutor) and acc.num_processes == 4 and acc.config == "fsdp2"
    assert get_executor(sub) is sub
    assert set(EXECUTORS) == {"local", "subprocess", "accelerate", "modal"}


def test_get_executor_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'slurm'.*subprocess, accelerate or modal"):
        get_executor("slurm")
    with pytest.raises(ConfigError, match="executor 'accelerate'.*num_gpus"):
        get_executor({"name": "accelerate", "num_gpus": 2})
    with pytest.raises(ConfigError, match="neither one of TRL's profiles"):
        get_executor({"name": "accelerate", "config": "zero4"})
    with pytest.raises(ConfigError, match="num_processes must be a positive integer"):
        AccelerateExecutor(num_processes=0)


@pytest.mark.parametrize("name", TRL_PROFILES)
def test_trl_profiles_resolve_to_trls_files(name: str) -> None:
    path = profile_path(name)
    trl_dir = Path(importlib.util.find_spec("trl").submodule_search_locations[0])
    assert path == trl_dir / "accelerate_configs" / f"{name}.yaml" and path.is_file()


def test_own_config_file(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    args, _env = AccelerateExecutor(num_processes=2, config=str(own)).launch_args(cpu=False, gpus=2)
    assert args[args.index("--config_file") + 1] == str(own)


def test_cpu_launch_is_torchrun_with_cpu_processes() -> None:
    args, env = AccelerateExecutor(num_processes=3, cpu=True).launch_args()
    assert args[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    # `--cpu` would start one process; `--multi_gpu` starts N and ACCELERATE_USE_CPU makes them CPU ones.
    assert "--cpu" not in args and "--multi_gpu" in args
    assert args[args.index("--num_processes") + 1] == "3"
    assert args[args.index("--mixed_precision") + 1] == "no"
    assert args[args.index("--main_process_port") + 1] == "0"  # a free port: runs may overlap
    assert env == {"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""}


def test_gpu_launch_uses_the_profile_and_checks_the_gpu_count() -> None:
    executor = AccelerateExecutor(num_processes=4, config="fsdp2", mixed_precision="bf16")
    args, env = executor.launch_args(cpu=False, gpus=8)
    assert args[args.index("--config_file") + 1] == str(profile_path("fsdp2"))
    assert args[args.index("--num_processes") + 1] == "4"
    assert args[args.index("--mixed_precision") + 1] == "bf16"
    assert "--multi_gpu" not in args and env == {}
    with pytest.raises(ConfigError, match="num_processes=4 but only 2 GPU"):
        executor.launch_args(cpu=False, gpus=2)
    one, _ = AccelerateExecutor(num_processes=1).launch_args(cpu=False, gpus=1)
    assert one[one.index("--config_file") + 1] == str(profile_path("single_gpu"))  # DDP needs 2+


def test_sharded_profiles_refuse_cpu_and_need_deepspeed() -> None:
    with pytest.raises(ConfigError, match="zero3 profile needs GPUs"):
        AccelerateExecutor(config="zero3", cpu=True).launch_args()
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(MissingDependencyError, match="pip install deepspeed"):
            AccelerateExecutor(config="zero2").launch_args(cpu=False, gpus=2)
