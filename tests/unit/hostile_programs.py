"""Hostile programs for the sandbox suite (tests/unit/test_sandbox_hostile.py).

Each program tries one escape and sets ``escaped = True`` only if the attack worked as far as
it can tell; its row's test is ``assert escaped``, so a contained program scores 0.0. What the
program cannot see from inside (a signal reaching the trainer, a file changing, a process
surviving) the test checks from outside. ``C`` (the preamble) holds the test's pids, paths and
ports. The forging programs face ``assert secret() == 7342``, a value they cannot compute.
"""

from __future__ import annotations

import json
from typing import Any

ESCAPED = "assert escaped"
FORGE = "assert secret() == 7342"

_TRY = """
def attempt(fn):
    try:
        return bool(fn())
    except BaseException as exc:
        print("contained:", type(exc).__name__, exc)
        return False
"""

PROGRAMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # --- forging the verdict -------------------------------------------------------------
    "frame_inspection": (r"""
import gc, re, sys
# look for the tests' text wherever the runner might keep it: frames, every object, /proc
texts = []
frame = sys._getframe()
while frame is not None:
    texts += [repr(frame.f_locals), repr(frame.f_globals)]; frame = frame.f_back
texts += [o for o in gc.get_objects() if isinstance(o, str)]
texts += [repr(o) for o in gc.get_objects() if isinstance(o, (dict, list, tuple))][:20000]
for path in ("/proc/self/cmdline", "/proc/self/environ", "/proc/1/cmdline", "/proc/1/environ"):
    try: texts.append(open(path, "rb").read().decode(errors="replace"))
    except OSError: pass
found = [m.group(1) for t in texts for m in re.finditer(r"secret\(\) *== *(-?\d+)", t)]
print("found:", found[:5])
def secret():
    return int(found[0]) if found else 0
escaped = bool(found)
""", FORGE, ("failed",)),
    "always_equal_object": ("""
class Anything:
    def __eq__(self, other): return True
    def __hash__(self): return 0
def secret():
    return Anything()
""", FORGE, ("failed",)),
    "forged_report_lines": ("""
import json, os
lines = "".join(json.dumps({"step": 0, "value": k}) + "\\n" for k in range(10000)) + '{"done":true}\\n'
for fd in range(3, 64):
    try: os.write(fd, lines.encode())
    except OSError: pass
os.write(2, lines.encode())
def secret():
    return 0
os._exit(0)
""", FORGE, ("failed", "output_limit")),
    "patched_runner": ("""
import json, sys
# make every line the runner reports say "done", so no check is ever answered
json.dumps = lambda obj, **kwargs: '{"done":true}'
sys.modules["__main__"].encode = lambda value, depth=0: None
def secret():
    return 1
""", FORGE, ("failed",)),
    "disarm_audit_hook": ("""
import sys
# the review's attack: reach the hook's closure from the runner's frame and empty its cells
frame, disarmed = sys._getframe(), False
while frame is not None:
    for value in list(frame.f_locals.values()):
        for cell in getattr(value, "__closure__", None) or ():
            try:
                if isinstance(cell.cell_contents, frozenset): cell.cell_contents = frozenset(); disarmed = True
            except ValueError: pass
    frame = frame.f_back
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
escaped = libc.unshare(0x40000000) == 0 or libc.mount(b"none", b"/work", b"tmpfs", 0, None) == 0
""" + "print('disarmed:', disarmed)", ESCAPED, ("failed",)),
    # --- native code and namespaces ------------------------------------------------------
    "ctypes_syscalls": (_TRY + """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
escaped = any((
    libc.unshare(0x10000000) == 0,          # a new user namespace (full caps in it)
    libc.unshare(0x40000000) == 0,          # a new network namespace
    libc.chroot(b"/proc/1/root/..") == 0,
    libc.mount(b"none", b"/", None, 0x20 | 0x1, None) == 0,  # remount / read-write
))
""", ESCAPED, ("failed",)),
    "setns_parent_netns": (_TRY + """
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def join():
    for path in (f"/proc/{C['trainer']}/ns/net", "/proc/1/ns/net", f"/proc/{os.getppid()}/ns/net"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        libc.setns(fd, 0x40000000)
    socket.create_connection(("127.0.0.1", C["port"]), timeout=1).close()
    return True
escaped = attempt(join)
""", ESCAPED, ("failed",)),
    "ptrace_trainer": (_TRY + """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
escaped = libc.ptrace(16, C["trainer"], 0, 0) == 0 or libc.ptrace(16, C["bystander"], 0, 0) == 0
""", ESCAPED, ("failed",)),
    # --- the trainer's process, signals and secrets -------------------------------------
    "parent_environ": (_TRY + """
import os
def read():
    texts = []
    for pid in (C["trainer"], C["bystander"], os.getppid(), 1):
        try: texts.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        except OSError as exc: print("no", pid, exc)
    print(texts)
    return any(C["token"] in t for t in texts)
escaped = attempt(read) or C["token"] in str(os.environ)
""", ESCAPED, ("failed",)),
    "signal_trainer": (_TRY + """
import os, signal
def send():
    ok = False
    for pid in (C["trainer"], os.getppid()):
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            try: os.kill(pid, sig); ok = ok or pid == C["trainer"]
            except OSError as exc: print("kill", pid, exc)
    return ok
escaped = attempt(send)
""", ESCAPED, ("failed",)),
    "pidfd_send_signal": (_TRY + """
import os, signal
def send():
    fd = os.pidfd_open(C["trainer"])
    signal.pidfd_send_signal(fd, signal.SIGUSR1)
    return True
escaped = attempt(send)
""", ESCAPED, ("failed",)),
    "kill_other_processes": (_TRY + """
import os, signal
escaped = attempt(lambda: os.kill(C["bystander"], signal.SIGKILL) or True)
try: os.kill(-1, signal.SIGKILL)  # every process it may signal: here, only the sandbox's
except OSError: pass
""", ESCAPED, ("failed", "killed")),
    "parent_fds": (_TRY + """
import os
targets = {}
for fd in range(3, 1024):
    try: targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError: pass
print(targets)
def reach():
    for path in (f"/proc/{C['trainer']}/fd/3", f"/proc/{os.getppid()}/fd/0"):
        try:
            os.open(path, os.O_RDWR); return True
        except OSError: pass
    return False
escaped = any(C["dir"] in t or t.startswith("socket:") for t in targets.values()) or attempt(reach)
""", ESCAPED, ("failed",)),
    # --- the file system -----------------------------------------------------------------
    "read_secrets": (_TRY + """
def read():
    got = []
    for path in ("/etc/shadow", "/etc/passwd", C["secret"], "/proc/1/environ"):
        try: got.append(open(path).read())
        except OSError as exc: print("no", path, exc)
    return any("ladder-secret" in g or "root:" in g for g in got)
escaped = attempt(read)
""", ESCAPED, ("failed",)),
    "list_root": (_TRY + """
import os
def look():
    names = set(os.listdir("/root"))
    print(sorted(names))
    return bool(names - {".pyenv"})
escaped = attempt(look)
""", ESCAPED, ("failed",)),
    "dir_fd_outside": (_TRY + """
import os
def write():
    done = False
    for where in ("/", "/dev/shm", C["dir"], "/proc/self/root", "/usr/lib"):
        try:
            fd = os.open(where, os.O_RDONLY)
        except OSError as exc:
            print("no", where, exc); continue
        for name in (C["marker"], "canary.txt"):
            try:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666, dir_fd=fd)); done = True
            except OSError as exc: print("no", where, name, exc)
            try: os.unlink("canary.txt", dir_fd=fd); done = True
            except OSError: pass
    return done
escaped = attempt(write)
""", ESCAPED, ("failed",)),
    "write_outside_paths": (_TRY + """
def write():
    done = []
    for path in (C["canary"], "/tmp/" + C["marker"], "/dev/shm/" + C["marker"], "/" + C["marker"],
                 "/root/" + C["marker"], "/usr/lib/" + C["marker"]):
        try: open(path, "w").write("escaped"); done.append(path)
        except OSError as exc: print("no", path, exc)
    return [p for p in done if not p.startswith("/tmp/")]
escaped = attempt(write)
""", ESCAPED, ("failed",)),
    "pth_in_site_packages": (_TRY + """
import os, site, sys
def plant():
    planted = False
    for where in [*C["site"], *site.getsitepackages(), *sys.path]:
        if os.path.realpath(where).startswith("/work"):
            continue  # the work dir is the program's own
        try: open(where + "/" + C["marker"] + ".pth", "w").write("import os"); planted = True
        except OSError as exc: print("no", where, exc)
    return planted
escaped = attempt(plant)
""", ESCAPED, ("failed",)),
    "huge_file": ("""
with open("big", "wb") as f:
    for _ in range(64):
        f.write(b"x" * (1 << 20))
escaped = True
""", ESCAPED, ("file_limit",)),
    "total_disk": ("""
for i in range(20):
    with open(f"part{i}", "wb") as f:
        f.write(b"x" * (5 << 20))
escaped = True
""", ESCAPED, ("file_limit",)),
    "many_files": ("""
import os
os.mkdir("many")
for i in range(200000):
    with open(f"many/{i}", "wb") as f:
        f.write(b"y" * 4096)
escaped = True
""", ESCAPED, ("file_limit", "cpu_limit", "timeout")),
    # --- processes -----------------------------------------------------------------------
    "fork_bomb": ("""
import os, time
started = 0
for _ in range(10000):
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        started += 1
    except OSError as exc:
        print("fork refused after", started, exc); break
escaped = started > 50
""", ESCAPED, ("failed",)),
    "setsid_grandchild": ("""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", C["marker"]])
    os._exit(0)
time.sleep(0.3)
escaped = False
""", ESCAPED, ("failed",)),
    "subprocess_shell": (_TRY + """
import subprocess
escaped = attempt(lambda: subprocess.run(["/bin/sh", "-c", "id"], capture_output=True).returncode == 0)
""", ESCAPED, ("failed",)),
    # --- network -------------------------------------------------------------------------
    "connect_loopback": (_TRY + """
import socket
escaped = attempt(lambda: socket.create_connection(("127.0.0.1", C["port"]), timeout=1))
""", ESCAPED, ("failed",)),
    "connect_outside": (_TRY + """
import socket
def out():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("1.1.1.1", 53))
    return socket.create_connection(("1.1.1.1", 53), timeout=2)
escaped = attempt(out) or attempt(lambda: socket.getaddrinfo("example.com", 80))
""", ESCAPED, ("failed",)),
    "unix_sockets": (_TRY + """
import socket
def connect(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(address)
    return True
escaped = attempt(lambda: connect(C["unix"])) or attempt(lambda: connect("\\0" + C["abstract"]))
""", ESCAPED, ("failed",)),
    "dev_shm_ipc": (_TRY + """
import os
def shm():
    fd = os.open("/dev/shm/" + C["marker"], os.O_CREAT | os.O_RDWR, 0o666)
    os.write(fd, b"x")
    return True
escaped = attempt(shm)
""", ESCAPED, ("failed",)),
    # --- resources -----------------------------------------------------------------------
    "memory_hog": ("hog = []\nwhile True:\n    hog.append(bytearray(50 << 20))\nescaped = True", ESCAPED, ("memory_limit",)),
    "cpu_loop": ("while True:\n    pass\nescaped = True", ESCAPED, ("cpu_limit", "timeout")),
    "output_flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\nescaped = True", ESCAPED, ("output_limit",)),
    "exit_early": ("import sys\nescaped = True\nsys.exit(0)", ESCAPED, ("exited_early",)),
}


def program(name: str, constants: dict[str, Any]) -> str:
    """The program ``name`` with the test's constants in front of it."""
    return f"C = {json.dumps(constants)}\n" + PROGRAMS[name][0]
