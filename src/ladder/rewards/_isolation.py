"""How a checked reward is called, and how its time limit is enforced.

``process`` (the default on Linux): the call runs in a forked copy of the trainer, which is
killed, with everything it started, at the deadline; nothing is left behind. The copy shares
nothing afterwards: TRL's ``log_extra``/``log_metric`` calls are recorded there and replayed
here, the result comes back pickled, and any other side effect (a counter, a cache, a CUDA
call) stays in the copy. ``main``: in the calling thread, which must be the main thread, with a
signal-based deadline (a real-time signal, so a reward's own ``signal.alarm`` still works).
``thread``: in a daemon thread that is abandoned, still running, after a timeout.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ISOLATIONS", "RewardCrash", "RewardTimeout", "call_isolated", "default_isolation"]

ISOLATIONS = ("process", "thread", "main")
_LOG_HOOKS = ("log_extra", "log_metric")
# A real-time signal nothing else uses: a reward's own SIGALRM (math-verify's timeouts) is untouched.
_DEADLINE_SIGNAL = signal.SIGRTMIN + 7 if hasattr(signal, "SIGRTMIN") else getattr(signal, "SIGUSR2", None)


class RewardTimeout(Exception):
    """The call did not return in time (turned into a ``RewardError`` by the checked wrapper)."""


class RewardCrash(RuntimeError):
    """The reward's process died without returning (a signal, ``os._exit``)."""


class _Deadline(BaseException):
    """Raised in the main thread at the deadline; a BaseException, so ``except Exception`` in a
    reward does not swallow it."""


class Opaque:
    """Stands in for a returned value that cannot be pickled back from the child."""

    def __init__(self, value: Any) -> None:
        self.type_name = type(value).__name__
        self.text = repr(value)[:200]

    def __repr__(self) -> str:
        return self.text


def default_isolation() -> str:
    """``process`` where ``fork`` is safe to use (Linux), else ``thread``."""
    return "process" if sys.platform.startswith("linux") and hasattr(os, "fork") else "thread"


def call_isolated(
    fn: Callable[..., Any], kwargs: Mapping[str, Any], isolation: str, timeout_s: float | None
) -> Any:
    """``fn(**kwargs)`` under ``isolation``; :class:`RewardTimeout` after ``timeout_s`` seconds."""
    if isolation == "process":
        return _in_child(fn, kwargs, timeout_s)
    if isolation == "main":
        return _in_main_thread(fn, kwargs, timeout_s)
    return _in_thread(fn, kwargs, timeout_s)


def _in_thread(fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout_s: float | None) -> Any:
    if timeout_s is None:
        return fn(**kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread below
            box["error"] = exc

    # Daemon, so a hung reward cannot keep the interpreter alive at exit; Python cannot kill it.
    worker = threading.Thread(target=target, name="ladder-reward", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise RewardTimeout("its thread cannot be stopped and is left running in the background")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _in_main_thread(fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout_s: float | None) -> Any:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"it asks for the main thread (isolation='main'), but was called from thread "
            f"{threading.current_thread().name!r}; call it from the main thread or use isolation='process'"
        )
    if timeout_s is None or _DEADLINE_SIGNAL is None:
        return fn(**kwargs)
    lock = threading.Lock()
    armed = [True]
    main = threading.main_thread().ident
    assert main is not None

    def on_deadline(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _Deadline

    def fire() -> None:
        with lock:
            if armed[0]:
                signal.pthread_kill(main, _DEADLINE_SIGNAL)

    previous = signal.signal(_DEADLINE_SIGNAL, on_deadline)
    timer = threading.Timer(timeout_s, fire)
    timer.daemon = True
    try:
        timer.start()
        return fn(**kwargs)
    except _Deadline:
        raise RewardTimeout("it was interrupted in the main thread") from None
    finally:
        with lock:
            armed[0] = False
        timer.cancel()
        timer.join()  # no signal is sent after this; swallow one that is still pending
        signal.pthread_sigmask(signal.SIG_BLOCK, {_DEADLINE_SIGNAL})
        signal.sigtimedwait({_DEADLINE_SIGNAL}, 0)
        signal.signal(_DEADLINE_SIGNAL, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {_DEADLINE_SIGNAL})


def _child(fn: Callable[..., Any], kwargs: Mapping[str, Any], out: int) -> None:
    """In the forked child: call, record the log hooks, send everything back, never return."""
    try:
        os.setpgid(0, 0)  # its own group, so the kill at the deadline reaches what it starts
        calls: list[tuple[str, tuple[Any, ...]]] = []
        local = dict(kwargs)
        for key in _LOG_HOOKS:
            if callable(local.get(key)):
                local[key] = lambda *args, _key=key: calls.append((_key, args))
        try:
            message: tuple[Any, ...] = ("ok", fn(**local))
            data = _dumps(message, calls)
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which re-raises it
            text = traceback.format_exc()
            try:
                data = pickle.dumps((("error", exc, text), calls))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                data = pickle.dumps((("error", RuntimeError(f"{type(exc).__name__}: {exc}"), text), []))
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - the process ends either way
                pass
        os._exit(0)


def _dumps(message: tuple[Any, ...], calls: list[tuple[str, tuple[Any, ...]]]) -> bytes:
    try:
        return pickle.dumps((message, calls))
    except Exception:  # noqa: BLE001, S110 - fall back to what can travel
        pass
    value = message[1]
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            try:
                pickle.dumps(item)
                items.append(item)
            except Exception:  # noqa: BLE001
                items.append(Opaque(item))
        value = items
    else:
        value = Opaque(value)
    kept = []
    for call in calls:
        try:
            pickle.dumps(call)
            kept.append(call)
        except Exception:  # noqa: BLE001, S112 - a log value that cannot travel is dropped
            continue
    return pickle.dumps((("ok", value), kept))


def _in_child(fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout_s: float | None) -> Any:
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns that forking a threaded process is risky
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(fn, kwargs, write_fd)
    os.close(write_fd)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    data = bytearray()
    timed_out = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    timed_out = True
                    break
                if not selector.select(remaining):
                    continue
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_fd)
        # The child is a zombie or still running, so its pid (and group id) cannot be reused yet.
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise RewardTimeout("its process and everything it started were killed")
    if not data:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.waitstatus_to_exitcode(status)}"
        raise RewardCrash(f"the reward's process died without returning ({how})")
    (kind, *rest), calls = pickle.loads(bytes(data))  # our own child's bytes
    for key, args in calls:
        kwargs[key](*args)
    if kind == "error":
        exc, text = rest
        if isinstance(exc, BaseException):
            exc.add_note(f"in the reward's process:\n{text}")
            raise exc
    return rest[0]
