"""Helpers for the tests that run code in the sandbox (imported by several test modules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ladder.rewards import SandboxUnavailableError
from ladder.rewards._bwrap import Bubblewrap

# .ci/run sets it, so a CI machine without a working bubblewrap fails instead of skipping.
REQUIRE = "LADDER_REQUIRE_SANDBOX"


def require_sandbox() -> None:
    """Skip (fail, under ``LADDER_REQUIRE_SANDBOX=1``) unless bubblewrap sandboxes work here."""
    try:
        Bubblewrap().check()
    except SandboxUnavailableError as exc:
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but the sandbox does not work: {exc}")
        pytest.skip(str(exc))


def children(pid: int | None = None) -> set[int]:
    """Live child processes of ``pid`` (default: this process), from /proc."""
    pid = pid or os.getpid()
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:  # the process ended while we looked
                continue
    return pids
