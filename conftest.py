"""Collection rules for the doctests in ``src/ladder`` (tests/conftest.py holds the fixtures).

The doctests of the ``python_tests`` reward run real code in the bubblewrap sandbox: where it
does not work they are skipped (``.ci/run`` sets ``LADDER_REQUIRE_SANDBOX=1``, so in CI they run
or fail), as the sandbox tests under tests/ are.
"""

from __future__ import annotations

import os

import pytest

_SANDBOX_DOCTESTS = ("ladder.rewards.code.", "ladder.rewards._run_code.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    doctests = [i for i in items if isinstance(i, pytest.DoctestItem) and i.name.startswith(_SANDBOX_DOCTESTS)]
    if not doctests or os.environ.get("LADDER_REQUIRE_SANDBOX"):
        return
    from ladder.rewards import SandboxUnavailableError
    from ladder.rewards._bwrap import Bubblewrap

    try:
        Bubblewrap().check()
    except SandboxUnavailableError as exc:
        for item in doctests:
            item.add_marker(pytest.mark.skip(reason=str(exc)))
