"""The suite's own time limits: a hanging test fails at its limit instead of stalling the run."""

from __future__ import annotations

import os

import pytest
from conftest import HANG_LIMITS_S, SLOW

pytest_plugins = ["pytester"]


def test_every_test_has_a_global_limit(request):
    assert float(request.config.getini("timeout")) > 0  # pyproject's [tool.pytest.ini_options]


def test_hang_limits_name_existing_test_files():
    """A renamed file would silently fall back to the global limit."""
    here = os.path.dirname(__file__)
    missing = [name for name in HANG_LIMITS_S if not os.path.isfile(os.path.join(here, name))]
    assert not missing, f"tests/conftest.py HANG_LIMITS_S names files that do not exist: {missing}"


def test_slow_entries_name_existing_tests():
    """A renamed test would silently move back into the development lane."""
    here = os.path.dirname(__file__)
    missing = []
    for entry in SLOW:
        name, _, test = entry.partition("::")
        path = os.path.join(here, name)
        if not os.path.isfile(path):
            missing.append(entry)
        elif test:
            with open(path, encoding="utf-8") as f:
                if f"def {test}(" not in f.read():
                    missing.append(entry)
    assert not missing, f"tests/conftest.py SLOW names tests that do not exist: {missing}"


@pytest.mark.timeout(120)
def test_a_hanging_test_fails_at_its_limit(pytester):
    pytester.makepyfile("""
        import time
        import pytest

        @pytest.mark.timeout(1)
        def test_hangs():
            time.sleep(60)

        def test_after_it_runs():
            assert True
    """)
    result = pytester.runpytest_subprocess()  # pytest-timeout is an installed plugin
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])
