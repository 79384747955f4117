"""Keep freed memory in the process: glibc's malloc settings for training and generating on a CPU.

glibc serves every block above its mmap threshold (128 KiB, raised as the program frees blocks,
to at most 32 MiB) with a fresh ``mmap()`` and gives it back with ``munmap()`` on free, and it
trims the heap's free top once that passes 128 KiB. A training step of torch on a CPU allocates
and frees hundreds of megabytes of activations, logits and gradients, so each step page-faults
them in again, 4 KiB at a time, each page zeroed by the kernel: on the demo's LoRA step that was
about 210,000 page faults and 1.1-1.4 s of system CPU per 3 s step (docs/benchmarks.md,
``bench/levers.py malloc``). Serving every block from the heap (``M_MMAP_MAX`` 0) and keeping up
to 1 GiB of its free top (``M_TRIM_THRESHOLD``) lets the next step reuse the pages: on the
demo, 0.36x the page faults and 0.66x SFT's training time, the same arithmetic. This is what
``LD_PRELOAD``-ing jemalloc or tcmalloc does for torch's CPU launcher
(``torch.backends.xeon.run_cpu``), without a library to install.

``ladder``'s command line calls :func:`keep_freed_memory` before it trains or generates; call it
yourself at the start of a program that runs :class:`ladder.Pipeline` on a CPU. It changes
nothing where the C library is not glibc, where another allocator is preloaded, where the
environment already sets glibc's malloc parameters (yours win), or with
``LADDER_KEEP_FREED_MEMORY=0``. Memory freed during a step stays in the process for the next one,
so the resident size between steps stays near its peak instead of falling back, and the peak
grows (the demo's: 9.5 -> 11.1 GB, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: the free top of the heap kept for reuse before glibc hands it back to the kernel
TRIM_THRESHOLD = 1 << 30

_ENV = "LADDER_KEEP_FREED_MEMORY"
_GLIBC_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_applied: bool | None = None


def _skip_reason() -> str | None:
    if os.environ.get(_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return f"{_ENV}={os.environ[_ENV]}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return f"another allocator is preloaded (LD_PRELOAD={preload})"
    if any(name in os.environ for name in _GLIBC_MALLOC_ENV) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "the environment sets glibc's malloc parameters"
    return None


def keep_freed_memory() -> bool:
    """Serve large blocks from glibc's heap and keep its free top, so freed tensors' pages are reused.

    Returns whether the settings are in effect (applied now or by an earlier call). Safe to call
    more than once and from any program; it never raises.
    """
    global _applied
    if _applied is not None:
        return _applied
    reason = _skip_reason()
    if reason is not None:
        logger.debug("keeping glibc's malloc settings: %s", reason)
        _applied = False
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError) as exc:  # no libc to load, or one without mallopt
        logger.debug("could not set glibc's malloc parameters: %s", exc)
        ok = False
    if ok:
        logger.debug("glibc malloc: large blocks from the heap, up to %d MiB of free top kept", TRIM_THRESHOLD >> 20)
    _applied = ok
    return ok
