"""One run per run directory, and a clean stop on SIGTERM/SIGINT.

:class:`RunLock` is an exclusive ``flock`` on ``RUN/.lock``, held for the whole of
:meth:`~ladder.pipeline.Pipeline.run`. Two runs on one directory would delete each other's temp
and trainer directories (each cleans "leftovers" and resumable state it believes to be its own)
and publish stages without their files; the second one is refused instead, naming the first's
pid. The kernel drops a ``flock`` when its holder dies however it dies, so a lock file left by a
killed run is simply taken over (with a log line naming the dead holder).

:func:`stop_on_signals` turns SIGTERM (which would otherwise end Python at once, skipping every
``finally``) into :class:`Interrupted`, a ``KeyboardInterrupt``, like SIGINT already is: the
pipeline stops its worker processes, records the stage as interrupted and leaves the trainer
checkpoints in place, so running the same command again resumes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from ladder.errors import RunInUseError
from ladder.layout import LOCK

__all__ = ["Interrupted", "RunLock", "stop_on_signals"]

logger = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGTERM or SIGINT); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """The exclusive lock of one run directory (``RUN/.lock``), as a context manager.

    The file holds the holder's ``pid``, ``host`` and ``started_at`` while it is held and is
    emptied when released, so a holder that died without releasing it shows up as one whose
    facts are still there.

    Raises (on enter):
        RunInUseError: another process holds the lock; the message names its pid and host.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its (last) holder; ``{}`` when it is empty or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunInUseError(self._in_use_message()) from None
        previous = self.holder()
        if previous.get("pid"):
            same_host = previous.get("host") == socket.gethostname()
            pid = previous["pid"]
            gone = same_host and isinstance(pid, int) and not _alive(pid)
            state = "is gone" if gone else "no longer holds it"
            logger.warning("%s: taking over the lock of pid %s on %s (started %s), which %s", self.run_dir,
                           previous.get("pid"), previous.get("host"), _when(previous.get("started_at")), state)
        facts = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(facts) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _in_use_message(self) -> str:
        held = self.holder()
        who = f"pid {held.get('pid', '?')} on {held.get('host', '?')}, started {_when(held.get('started_at'))}"
        return (f"run directory {self.run_dir} is in use by another ladder run ({who}); wait for it to finish, "
                f"stop it (kill {held.get('pid', '<pid>')}), or give this run another run_dir")

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # released cleanly: nothing to take over
        except OSError:
            logger.debug("could not empty %s", self.path, exc_info=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _when(timestamp: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(timestamp)))
    except (TypeError, ValueError):
        return "at an unknown time"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`Interrupted` in the main thread on SIGTERM (and SIGINT) while the body runs.

    The first signal raises; a second one while the run is stopping (terminating workers,
    recording the manifest) is logged and otherwise ignored, so the clean-up finishes; after
    it the usual handlers are back (a third signal acts at once). Handlers a caller installed
    are left alone, and nothing is installed outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = 0
    previous: dict[int, Any] = {}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received > 1:
            logger.warning("%s received while stopping; finishing the clean-up (send it again to stop at once)",
                           signal.Signals(signum).name)
            restore()
            return
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        restore()
