"""glibc keeps freed memory for reuse once ladder asks it to: a freed block's pages are not faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

# Allocates and touches a 96 MiB block (above glibc's largest mmap threshold, 32 MiB) three times,
# freeing it in between, and reports the minor page faults of the last two rounds.
_PROGRAM = """
import ctypes, json, resource, sys
apply = sys.argv[1] == "apply"
if apply:
    from ladder.cpu_allocator import keep_freed_memory
    applied = keep_freed_memory()
else:
    applied = None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 96 << 20
def round_trip():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip(); round_trip()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _run(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LADDER_KEEP_FREED_MEMORY")}
    out = subprocess.run([sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True,
                         env={**clean, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_page_faults() -> None:
    pages = (96 << 20) // 4096
    default = _run("default")
    kept = _run("apply")
    assert default["faults"] >= pages  # glibc maps each round's block afresh: every page faults again
    assert kept["applied"] is True
    assert kept["faults"] < pages // 20  # the heap's pages are reused


@pytest.mark.parametrize("env", [{"LADDER_KEEP_FREED_MEMORY": "0"}, {"MALLOC_MMAP_MAX_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_the_users_settings_win(env: dict[str, str]) -> None:
    result = _run("apply", **env)
    assert result["applied"] is False
    assert result["faults"] >= (96 << 20) // 4096  # glibc's own behaviour, untouched


def test_the_cli_applies_it_without_importing_torch() -> None:
    code = ("import sys, json; from ladder.cli import main; main(['stages']); "
            "from ladder import cpu_allocator; print(json.dumps([cpu_allocator._applied, 'torch' in sys.modules]))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LADDER_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, False]


def test_a_stage_worker_applies_it_too(tmp_path) -> None:
    code = ("import json; from ladder.executors import worker; "
            f"worker.main([{str(tmp_path / 'missing' / 'SPEC.json')!r}]); "
            "from ladder import cpu_allocator; print(json.dumps(cpu_allocator._applied))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LADDER_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is True
