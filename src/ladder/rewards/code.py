"""``python_tests``: run a completion's code against the row's tests, confined, judged outside.

Where the code runs: by default in a fresh bubblewrap sandbox per program (``_bwrap.py``:
new user, PID, mount, IPC and network namespaces, uid 65534, a read-only view of only the
interpreter, its standard library and the system libraries, a size-limited private tmpfs,
rlimits on CPU, memory, file size, processes and open files, everything killed at the end).
Where no sandbox works, the reward refuses to run unless you opt in to ``unconfined=True``;
``backend=`` takes another :class:`~ladder.rewards._sandbox.SandboxBackend`, e.g.
:class:`~ladder.rewards.sandbox_modal.ModalSandbox` for a VM per program.

Who decides: the parent. Asserts of the form ``assert f(x) == LITERAL`` become value steps:
only ``f(x)`` is sent into the sandbox, the expected value never is, and the parent compares
the reported plain-data value itself (``_sandbox_checks.py``). Statements it cannot split that
way run inside, where hostile code could fake their outcome; :attr:`SandboxResult.checked_inside`
counts them. docs/reliability.md lists what is and is not confined, and how it is tested.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from ladder.errors import ConfigError
from ladder.rewards._common import completion_text, last_tag_block
from ladder.rewards._run_code import SandboxLimits, SandboxResult, resolve_backend, run_python_tests
from ladder.rewards._sandbox import SandboxBackend

__all__ = [
    "PythonTests",
    "SandboxLimits",
    "SandboxResult",
    "extract_code",
    "make_python_tests",
    "python_tests",
    "run_python_tests",
]

logger = logging.getLogger(__name__)

UNCONFINED_ENV = "LADDER_PYTHON_TESTS_UNCONFINED"
_START_S = 0.5  # allowance per run for starting the sandbox and the interpreter
_KILL_S = 3.0  # allowance for killing and reaping the runs a batch deadline cuts short


# --------------------------------------------------------------------------------------------
# extraction

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The code in a completion, or ``None``.

    The last fenced block labelled ``python``/``py``/``python3`` wins, else the last unlabelled
    fenced block (blocks in other languages are skipped). When the completion has an
    ``<answer>`` block, only that block is searched, and its whole content is the code if it
    has no fence.

    Example:
        >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
        'def f():\\n    return 1\\n'
        >>> extract_code("<answer>x = 1</answer>")
        'x = 1'
        >>> extract_code("no code here") is None
        True
    """
    block = last_tag_block(text)
    scope = block if block is not None else text
    fences = _FENCE.findall(scope)
    labelled = [body for lang, body in fences if lang.lower() in ("python", "py", "python3")]
    unlabelled = [body for lang, body in fences if not lang]
    if labelled:
        return labelled[-1]
    if unlabelled:
        return unlabelled[-1]
    if block is not None and block.strip():
        return block.strip()
    return None


def _tests_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    lines = [str(v) for v in value if v is not None and str(v).strip()]
    return "\n".join(lines) or None


# --------------------------------------------------------------------------------------------
# the reward


class PythonTests:
    """The ``python_tests`` reward with your own settings, e.g. ``make_python_tests(timeout_s=3)``.

    Also named :data:`make_python_tests`.

    Args:
        limits: a full :class:`SandboxLimits`; keyword overrides are applied on top of it.
        workers: how many programs run at once (default: up to 4, by CPU count).
        name: the reward's ``__name__``, what TRL logs.
        batch_timeout_s: the deadline of one call: runs not finished by then are killed and
            score 0.0, and the count is logged. Keep it below the stage's ``reward_timeout_s``
            (pre-flight checks :meth:`PythonTests.worst_case_seconds` against it). ``None``: none.
        backend: where programs run (default: bubblewrap); e.g. ``ModalSandbox()``.
        unconfined: run without OS confinement (a warning is logged): trusted code only.
        **limit_overrides: any :class:`SandboxLimits` field.

    Example:
        >>> quick = make_python_tests(timeout_s=5, cpu_s=2, workers=1)
        >>> quick(["```python\\nx = 2\\n```"], tests=["assert x == 2"])
        [1.0]
    """

    # Every program already runs in its own killable sandbox and the batch has a deadline, so
    # checked_reward calls this reward in a thread of the trainer rather than a forked copy.
    isolation = "thread"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        workers: int | None = None,
        name: str = "python_tests",
        batch_timeout_s: float | None = 50.0,
        backend: SandboxBackend | None = None,
        unconfined: bool = False,
        **limit_overrides: Any,
    ) -> None:
        base = limits or SandboxLimits()
        self.limits = attrs.evolve(base, **limit_overrides) if limit_overrides else base
        if batch_timeout_s is not None and not batch_timeout_s > 0:
            raise ConfigError(f"{name}: batch_timeout_s must be > 0 or None, got {batch_timeout_s}")
        # Children spend their time in their own processes, so a few threads overlap start-up
        # without oversubscribing the CPU.
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.batch_timeout_s = batch_timeout_s
        self.backend = resolve_backend(backend, unconfined)
        self.unconfined = unconfined
        self.__name__ = name
        if unconfined:
            logger.warning(
                "%s: unconfined=True, so model-written code runs as the training user, with its files, "
                "network and processes in reach; only rlimits and an audit hook stand in the way", name
            )

    def worst_case_seconds(self, batch_size: int) -> float:
        """The longest one call on ``batch_size`` completions can take (every run hangs).

        Example:
            >>> make_python_tests(timeout_s=10, workers=2, batch_timeout_s=None).worst_case_seconds(16)
            84.0
            >>> make_python_tests(timeout_s=10, workers=2, batch_timeout_s=30).worst_case_seconds(16)
            33.0
        """
        waves = math.ceil(max(0, batch_size) / max(1, self.workers))
        worst = waves * (self.limits.timeout_s + _START_S)
        if self.batch_timeout_s is not None:
            worst = min(worst, self.batch_timeout_s + _KILL_S)
        return worst

    def run(self, completions: Sequence[Any], tests: Sequence[Any]) -> list[SandboxResult | None]:
        """Run every completion against its tests; ``None`` where a row has no tests."""
        jobs: list[tuple[int, str, str]] = []
        results: list[SandboxResult | None] = [None] * len(completions)
        for i, (completion, row_tests) in enumerate(zip(completions, tests, strict=True)):
            test_text = _tests_text(row_tests)
            if test_text is None:
                continue
            code = extract_code(completion_text(completion))
            if code is None:
                results[i] = SandboxResult(passed=False, status="no_code")
                continue
            jobs.append((i, code, test_text))
        if not jobs:
            return results
        self.backend.check()
        deadline = None if self.batch_timeout_s is None else time.monotonic() + self.batch_timeout_s

        def one(code: str, test_text: str) -> SandboxResult:
            return run_python_tests(code, test_text, self.limits, backend=self.backend, deadline=deadline)

        if len(jobs) == 1 or self.workers == 1:
            for i, code, test_text in jobs:
                results[i] = one(code, test_text)
        else:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ladder-sandbox") as pool:
                futures = {i: pool.submit(one, code, t) for i, code, t in jobs}
                for i, future in futures.items():
                    results[i] = future.result()
        return results

    def __call__(
        self,
        completions: Sequence[Any],
        tests: Sequence[Any],
        log_extra: Any = None,
        log_metric: Any = None,
        **kwargs: Any,
    ) -> list[float | None]:
        results = self.run(completions, tests)
        cut = sum(1 for r in results if r is not None and r.status == "batch_timeout")
        if cut:
            logger.warning(
                "%s: the batch deadline (batch_timeout_s=%g) cut %d of %d runs short; they score 0.0. "
                "Lower timeout_s, add workers, or raise batch_timeout_s (and the stage's reward_timeout_s)",
                self.__name__, self.batch_timeout_s, cut, len(results),
            )
        if callable(log_metric):  # TRL's hook: a scalar averaged over the logging step
            log_metric(f"{self.__name__}/batch_timeouts", float(cut))
        if callable(log_extra):  # TRL's hook: a column in the logged completions table
            log_extra(f"{self.__name__}_status", [r.status if r else None for r in results])
        return [None if r is None else (1.0 if r.passed else 0.0) for r in results]

    def __repr__(self) -> str:
        return (f"make_python_tests({self.limits!r}, workers={self.workers}, batch_timeout_s={self.batch_timeout_s}, "
                f"backend={self.backend!r})")


#: A ``python_tests`` reward with other settings: :class:`PythonTests`.
make_python_tests = PythonTests


_DEFAULTS: dict[bool, PythonTests] = {}


def python_tests(completions: Sequence[Any], tests: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 iff the completion's code passes every test of the row's ``tests`` column, else 0.0.

    The code is the completion's last ```` ```python ```` block (or its ``<answer>`` block);
    the ``tests`` column holds statements that raise on failure, as a string or a list of
    strings (MBPP's ``test_list``). Each program runs in its own bubblewrap sandbox (see this
    module's docs) with a 10 s timeout, 5 s of CPU, 512 MiB of memory and 32 MiB of disk; a
    batch ends after 50 s at most (unfinished runs score 0.0). Other settings:
    :func:`make_python_tests`. Without bubblewrap it raises, naming what to install, unless
    ``LADDER_PYTHON_TESTS_UNCONFINED=1`` is set. A completion without code scores 0.0; a row
    without tests gets ``None``. With TRL, each outcome (``passed``, ``failed``,
    ``timeout``...) is logged as the ``python_tests_status`` column.

    Example:
        >>> python_tests(
        ...     ["```python\\ndef sq(x):\\n    return x * x\\n```", "```python\\ndef sq(x):\\n    return x + x\\n```"],
        ...     tests=["assert sq(3) == 9", "assert sq(3) == 9"],
        ... )
        [1.0, 0.0]
    """
    return _default()(completions, tests=tests, **kwargs)


def _default() -> PythonTests:
    """The registered reward's instance; LADDER_PYTHON_TESTS_UNCONFINED is read at each call."""
    unconfined = os.environ.get(UNCONFINED_ENV, "").strip().lower() in ("1", "true", "yes")
    if unconfined not in _DEFAULTS:
        _DEFAULTS[unconfined] = PythonTests(unconfined=unconfined)
    return _DEFAULTS[unconfined]


def _default_worst_case(batch_size: int) -> float:
    return _default().worst_case_seconds(batch_size)


python_tests.isolation = "thread"  # type: ignore[attr-defined]  # see PythonTests.isolation
python_tests.worst_case_seconds = _default_worst_case  # type: ignore[attr-defined]
