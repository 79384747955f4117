"""A small seccomp filter for the bubblewrap sandbox: kernel interfaces a test never needs.

An extra layer, not the boundary (the namespaces are): it refuses, with ``EPERM``, the system
calls that reach into other processes (``ptrace``, ``process_vm_readv/writev``; inside the
sandbox only its own init could be reached, which holds nothing) and the large kernel
interfaces behind many privilege escalations (``io_uring``, ``bpf``, ``userfaultfd``,
``perf_event_open``, the key rings, ``kexec``, kernel modules). Calls of another ABI than the
native one (``int 0x80`` on x86-64, x32) are refused outright, so the list cannot be sidestepped.
Built by hand as classic BPF, the form ``bwrap --seccomp FD`` reads.
"""

from __future__ import annotations

import platform
import struct

__all__ = ["BLOCKED", "seccomp_program"]

# name -> (x86_64 number, aarch64 number)
BLOCKED: dict[str, tuple[int, int]] = {
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "perf_event_open": (298, 241),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
}
_ARCHES = {"x86_64": (0xC000003E, 0), "amd64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1), "arm64": (0xC00000B7, 1)}
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_ALLOW, _EPERM = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
_X32_BIT = 0x40000000


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The filter for this machine's architecture, or ``None`` where it has no table.

    Example:
        >>> len(seccomp_program("x86_64")) % 8, seccomp_program("riscv64") is None
        (0, True)
    """
    arch = _ARCHES.get((machine or platform.machine()).lower())
    if arch is None:
        return None
    audit_arch, column = arch
    numbers = sorted({row[column] for row in BLOCKED.values()})
    ops = [
        _op(_LD_W_ABS, 4),  # seccomp_data.arch
        _op(_JEQ_K, audit_arch, jt=1),
        _op(_RET_K, _EPERM),  # another ABI: refuse everything
        _op(_LD_W_ABS, 0),  # seccomp_data.nr
        _op(_JGE_K, _X32_BIT, jt=len(numbers) + 1),  # x32 numbers on x86-64: refuse
    ]
    for i, number in enumerate(numbers):
        ops.append(_op(_JEQ_K, number, jt=len(numbers) - i))  # jump to the EPERM below
    ops += [_op(_RET_K, _ALLOW), _op(_RET_K, _EPERM)]
    return b"".join(ops)
