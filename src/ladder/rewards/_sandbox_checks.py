"""The parent's half of ``python_tests``: split the tests into steps, judge what came back.

A test line of the form ``assert EXPR <op> LITERAL`` (or ``LITERAL <op> EXPR``,
``assert EXPR``, ``assert not EXPR``, ``assert math.isclose(EXPR, LITERAL, ...)``) becomes a
*value step*: only ``EXPR`` goes into the sandbox, whose runner reports its value as plain
data; the expected literal stays here, and the comparison is made here, on plain data (so an
object whose ``__eq__`` is always true cannot pass either). Every other statement (imports,
helper definitions, loops, asserts between two computed values, HumanEval's ``check(f)``) runs
inside the sandbox as an *exec step*, and its outcome is only as trustworthy as the code under
test: :attr:`StepPlan.inside` counts them.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import operator
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Check", "StepPlan", "Verdict", "decode", "judge", "plan_tests"]

_CompareOp = Callable[[Any, Any], bool]
_OPS: dict[type[ast.cmpop], tuple[str, _CompareOp]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda value, expected: value in expected),
    ast.NotIn: ("not in", lambda value, expected: value not in expected),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
# LITERAL <op> EXPR, rewritten as EXPR <mirror> LITERAL
_MIRROR: dict[type[ast.cmpop], tuple[str, _CompareOp]] = {
    ast.Eq: _OPS[ast.Eq],
    ast.NotEq: _OPS[ast.NotEq],
    ast.Lt: _OPS[ast.Gt],
    ast.LtE: _OPS[ast.GtE],
    ast.Gt: _OPS[ast.Lt],
    ast.GtE: _OPS[ast.LtE],
    ast.In: ("contains", lambda value, expected: expected in value),
    ast.NotIn: ("does not contain", lambda value, expected: expected not in value),
    ast.Is: _OPS[ast.Is],
    ast.IsNot: _OPS[ast.IsNot],
}
# Calls the parent may apply to a literal to build an expected value: `set((4, 5))`.
_BUILDERS: dict[str, Callable[..., Any]] = {
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "list": list,
    "sorted": sorted,
    "float": float,
}


@attrs.frozen
class Check:
    """One comparison the parent makes on the value a value step reports."""

    step: int
    line: int
    text: str
    op: str
    compare: _CompareOp
    expected: Any


@attrs.frozen
class StepPlan:
    """The steps sent to the sandbox (no expected values in them) and the parent's checks."""

    steps: tuple[dict[str, Any], ...]
    checks: tuple[Check, ...]
    inside: int  # statements that can fail only inside the sandbox (forgeable by hostile code)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _BUILDERS
        and not node.keywords
        and len(node.args) == 1
    ):
        ok, inner = _literal(node.args[0])
        if ok:
            try:
                return True, _BUILDERS[node.func.id](inner)
            except (TypeError, ValueError):
                pass
    return False, None


def _isclose(node: ast.expr) -> tuple[ast.expr, Any, dict[str, Any]] | None:
    """``math.isclose(EXPR, LITERAL, rel_tol=..., abs_tol=...)``, either argument order."""
    if not isinstance(node, ast.Call) or len(node.args) != 2:
        return None
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "isclose" and isinstance(func.value, ast.Name)
             and func.value.id == "math") or (isinstance(func, ast.Name) and func.id == "isclose")
    if not named:
        return None
    kwargs: dict[str, Any] = {}
    for keyword in node.keywords:
        ok, value = _literal(keyword.value)
        if not ok or keyword.arg not in ("rel_tol", "abs_tol"):
            return None
        kwargs[keyword.arg] = value
    for expr, lit in ((node.args[0], node.args[1]), (node.args[1], node.args[0])):
        ok, expected = _literal(lit)
        if ok and not _literal(expr)[0]:
            return expr, expected, kwargs
    return None


def _value_step(assert_node: ast.Assert) -> tuple[ast.expr, str, str, _CompareOp, Any] | None:
    """``(expr, kind, op, compare, expected)`` for an assert the parent can check, else None."""
    test = assert_node.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, type(test.ops[0]), test.comparators[0]
        for expr, lit, table in ((left, right, _OPS), (right, left, _MIRROR)):
            ok, expected = _literal(lit)
            if not ok or _literal(expr)[0]:
                continue
            if op in (ast.Is, ast.IsNot) and expected not in (None, True, False):
                return None
            name, compare = table[op]
            return expr, "value", name, compare, expected
        return None
    close = _isclose(test)
    if close is not None:
        expr, expected, kwargs = close

        def isclose(value: Any, target: Any, _kw: dict[str, Any] = kwargs) -> bool:
            return math.isclose(value, target, **_kw)

        return expr, "value", "isclose", isclose, expected
    if isinstance(test, (ast.Compare, ast.BoolOp)) or _literal(test)[0]:
        return None  # a comparison of two computed values is only honest inside the sandbox
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        if isinstance(test.operand, (ast.Compare, ast.BoolOp)):
            return None
        return test.operand, "truth", "is falsy", lambda value, _: value is False, None
    return test, "truth", "is truthy", lambda value, _: value is True, None


def _can_fail(node: ast.stmt) -> bool:
    return any(isinstance(n, (ast.Assert, ast.Raise, ast.Call)) for n in ast.walk(node)) and not isinstance(
        node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    )


@functools.lru_cache(maxsize=512)
def plan_tests(tests: str) -> StepPlan:
    """Split ``tests`` into steps for the sandbox and checks for the parent (cached per text).

    Example:
        >>> plan = plan_tests("assert add(2, 3) == 5\\nfor i in range(3):\\n    assert add(i, 0) == i")
        >>> [s["source"] for s in plan.steps], plan.inside
        (['add(2, 3)', 'for i in range(3):\\n    assert add(i, 0) == i'], 1)
        >>> plan.checks[0].op, plan.checks[0].expected
        ('==', 5)
    """
    try:
        module = ast.parse(tests, "tests.py")
    except (SyntaxError, ValueError):  # reported by the runner, as a failure of the row
        return StepPlan(steps=({"kind": "exec", "source": tests, "line": 1},), checks=(), inside=1)
    steps: list[dict[str, Any]] = []
    checks: list[Check] = []
    inside = 0
    for node in module.body:
        split = _value_step(node) if isinstance(node, ast.Assert) else None
        text = ast.get_source_segment(tests, node) or ast.unparse(node)
        if split is None:
            steps.append({"kind": "exec", "source": text, "line": node.lineno})
            inside += _can_fail(node)
            continue
        expr, kind, op, compare, expected = split
        source = ast.get_source_segment(tests, expr) or ast.unparse(expr)
        line = expr.lineno
        if "\n" in source:  # continuation lines keep their indentation: wrap to stay valid
            source, line = f"(\n{source}\n)", max(1, line - 1)
        checks.append(Check(step=len(steps), line=node.lineno, text=text, op=op, compare=compare, expected=expected))
        steps.append({"kind": kind, "source": source, "line": line})
    return StepPlan(steps=tuple(steps), checks=tuple(checks), inside=inside)


def decode(obj: Any, depth: int = 0) -> Any:
    """The value a runner's :func:`encode` wrote; ``ValueError`` for anything else.

    Example:
        >>> decode({"t": [1, [2.5, "x"], {"s": [3]}]})
        (1, [2.5, 'x'], {3})
    """
    if depth > 60:
        raise ValueError("nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(v, depth + 1) for v in obj]
    if isinstance(obj, dict) and len(obj) == 1:
        ((tag, body),) = obj.items()
        try:
            if tag == "b" and isinstance(body, str):
                return bytes.fromhex(body)
            if tag == "c" and isinstance(body, list) and len(body) == 2:
                return complex(float(body[0]), float(body[1]))
            if isinstance(body, list):
                items = [decode(v, depth + 1) for v in body]
                if tag == "t":
                    return tuple(items)
                if tag == "s":
                    return set(items)
                if tag == "f":
                    return frozenset(items)
                if tag == "d" and all(isinstance(p, list) and len(p) == 2 for p in items):
                    return {k: v for k, v in items}
        except TypeError as exc:  # an unhashable element of a set or key of a dict
            raise ValueError(str(exc)) from exc
    raise ValueError(f"not an encoded value: {str(obj)[:80]}")


@attrs.frozen
class Verdict:
    """What the parent concluded from a run's report."""

    passed: bool
    started: bool
    done: bool
    error: str | None = None
    errno: int | None = None
    detail: str = ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def judge(plan: StepPlan, report: bytes) -> Verdict:
    """Decide a run from its report: passed only if every step ran and every check holds."""
    started = done = False
    error: str | None = None
    errno: int | None = None
    noise: list[str] = []
    answers: dict[int, dict[str, Any]] = {}
    for raw in report.decode("utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            noise.append(raw[:200])
        elif obj == {"event": "start"}:
            started = True
        elif obj == {"done": True}:
            done = True
        elif isinstance(obj.get("step"), int) and "error" in obj:
            if error is None:
                error, errno = str(obj["error"])[:100], obj.get("errno") if isinstance(obj.get("errno"), int) else None
        elif isinstance(obj.get("step"), int) and ("value" in obj or "unencodable" in obj):
            if obj["step"] in answers:
                noise.append(f"step {obj['step']} answered twice")
            answers[obj["step"]] = obj
        else:
            noise.append(raw[:200])
    detail = ""
    failed = error is not None or bool(noise) or not done
    for check in plan.checks:
        if failed:
            break
        answer = answers.get(check.step)
        if answer is None:
            detail, failed = f"line {check.line}: `{check.text}` was not reached", True
        elif "unencodable" in answer:
            detail = (f"line {check.line}: `{check.text}`: the value is a {str(answer['unencodable'])[:60]}, "
                      f"which cannot be compared outside the sandbox")
            failed = True
        else:
            try:
                value = decode(answer["value"])
                ok = bool(check.compare(value, check.expected))
            except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
                value, ok = f"<{type(exc).__name__}: {exc}>", False
            if not ok:
                detail, failed = f"line {check.line}: `{check.text}` failed: the value was {_short(value)}", True
    if noise and not detail:
        detail = f"unexpected report lines: {noise[0]!r}"
    return Verdict(passed=not failed, started=started, done=done, error=error, errno=errno, detail=detail)
