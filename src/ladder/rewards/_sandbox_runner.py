"""The trusted runner of ``python_tests``: the first code that runs inside the sandbox.

This file is not imported by the sandbox: its source is passed to ``python -I -B -c`` (see
``ladder.rewards._sandbox``). It reads a JSON payload (the code and the test *steps*) from
stdin, sets the resource limits, optionally installs an audit hook, then runs the code and the
steps in one namespace. It writes one JSON line per event to its *report* stream (the fd that
was stderr; the program's own stderr goes to stdout):

* ``{"event": "start"}`` once the code is about to run;
* ``{"step": i, "value": ...}`` for a *value* step: the value of an expression from the tests,
  encoded as plain data (:func:`encode`), or ``{"step": i, "unencodable": "TypeName"}``;
* ``{"step": i, "error": "TypeName", "errno": n}`` where the code or a step raised;
* ``{"done": true}`` after the last step.

Nothing here is trusted by the parent: once the code under test runs it can rewrite this
process, so the parent never reads a verdict from it. The parent keeps each check's expected
value to itself (it is never sent here) and compares it with the reported value, so forging
a pass means computing the right answer. Tracebacks go to the program's output for debugging.
"""

import os
import sys


def encode(value, depth=0):
    """Plain data as JSON: scalars as themselves, other containers tagged (``{"t": [...]}``)."""
    if depth > 50:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)  # NaN and infinities travel as JSON's NaN/Infinity
    if isinstance(value, str):
        return str(value)
    if isinstance(value, complex):
        return {"c": [float(value.real), float(value.imag)]}
    if isinstance(value, (bytes, bytearray)):
        return {"b": bytes(value).hex()}
    if isinstance(value, tuple):
        return {"t": [encode(v, depth + 1) for v in tuple(value)]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in list(value)]
    if isinstance(value, frozenset):
        return {"f": [encode(v, depth + 1) for v in frozenset(value)]}
    if isinstance(value, set):
        return {"s": [encode(v, depth + 1) for v in set(value)]}
    if isinstance(value, dict):
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict(value).items()]}
    raise TypeError(type(value).__name__)


def _limits(cfg):
    import resource
    import signal

    def limit(kind, soft, hard):
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:  # a hard limit can be lowered, never raised
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))

    limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)  # SIGXCPU, then SIGKILL
    limit(resource.RLIMIT_AS, cfg["memory"], cfg["memory"])
    limit(resource.RLIMIT_FSIZE, cfg["file_bytes"], cfg["file_bytes"])
    limit(resource.RLIMIT_CORE, 0, 0)
    limit(resource.RLIMIT_NOFILE, 256, 256)
    if cfg.get("processes") is not None:
        limit(resource.RLIMIT_NPROC, cfg["processes"], cfg["processes"])
    # Python ignores SIGXFSZ (a write past RLIMIT_FSIZE then fails with EFBIG, which code can
    # swallow); the default action kills the process, so the parent sees the signal.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def _audit_hook(root):
    """An extra layer, not the boundary: refuse network, processes, signals, native code and
    writes outside ``root``. Code that reaches this hook's closure can disarm it."""
    import _posixsubprocess
    import socket
    import subprocess

    realpath, fspath, sep, af_unix = os.path.realpath, os.fspath, os.sep, socket.AF_UNIX
    blocked = frozenset((
        "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
        "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "socket.getnameinfo",
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.dlopen",
        "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "sys._current_frames",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    ))
    path_events = frozenset((
        "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.link",
        "os.symlink", "os.mkdir", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    ))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def inside(path):
        # An int is a file descriptor (os.chmod(fd)) or a dir_fd; the hook cannot tell where
        # those point, which is one reason it is not the boundary.
        if path is None or isinstance(path, int):
            return True
        try:
            path = realpath(fspath(path))
        except Exception:  # noqa: BLE001 - an unreadable path is not inside
            return False
        return path == root or path.startswith(root + sep)

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "socket.__new__" and args[1] != af_unix:
            raise PermissionError("sandbox: creating network sockets is not allowed")
        if event == "import" and args[0] == "_ctypes":
            raise ImportError("sandbox: importing _ctypes is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the work dir is not allowed")
        elif event in path_events:
            for arg in args[:2]:
                if not inside(arg):
                    raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")

    def no_fork_exec(*args, **kwargs):
        raise PermissionError("sandbox: starting processes is not allowed")

    # subprocess.Popen raises an audit event, but _posixsubprocess.fork_exec under it does not.
    _posixsubprocess.fork_exec = subprocess._fork_exec = no_fork_exec
    sys.addaudithook(hook)


def _main():
    import json
    import traceback

    cfg = json.loads(sys.argv[1])
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    report = os.dup(2)
    os.dup2(1, 2)  # the program's stderr joins its stdout; fd 2 was the report stream

    def send(obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(report, data):]

    root = cfg["workdir"]
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    root = os.path.realpath(root)
    with open(os.path.join(root, "solution.py"), "w", encoding="utf-8") as f:
        f.write(payload["code"])
    if cfg.get("audit_hook", True):
        _audit_hook(root)  # before the limits: its imports need memory the code will not get
    _limits(cfg)
    sys.dont_write_bytecode = True
    sys.path.insert(0, root)
    namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
    send({"event": "start"})
    step = -1
    try:
        exec(compile(payload["code"], "solution.py", "exec"), namespace)  # noqa: S102 - running it is the point
        for step, item in enumerate(payload["steps"]):
            source = "\n" * (item["line"] - 1) + item["source"]  # tracebacks show the tests' lines
            if item["kind"] == "exec":
                exec(compile(source, "tests.py", "exec"), namespace)  # noqa: S102 - running it is the point
                continue
            value = eval(compile(source, "tests.py", "eval"), namespace)
            if item["kind"] == "truth":
                send({"step": step, "value": bool(value)})
                continue
            try:
                send({"step": step, "value": encode(value)})
            except (TypeError, ValueError, RecursionError):
                send({"step": step, "unencodable": type(value).__name__})
    except BaseException as exc:  # every failure is reported, then the run ends
        if isinstance(exc, SystemExit):
            raise
        try:
            send({"step": step, "error": type(exc).__name__, "errno": getattr(exc, "errno", None)})
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(1)
    sys.stdout.flush()
    send({"done": True})
    os._exit(0)


if __name__ == "__main__":
    _main()
