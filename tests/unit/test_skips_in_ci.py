"""tests/conftest.py: in CI nothing may be skipped. A test's skip, however it comes (pytest.skip in
the test or in a fixture, a skipif marker), is reported as a failure with its reason, and a module
skipped whole at collection makes the run exit 1. Outside CI a skip stays a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SKIPPING_TESTS = {
    "in_the_test": """
        import pytest

        def test_it():
            pytest.skip("needs root")
    """,
    "in_a_fixture": """
        import pytest

        @pytest.fixture
        def namespace():
            pytest.skip("needs root")

        def test_it(namespace):
            pass
    """,
    "by_a_marker": """
        import pytest

        @pytest.mark.skipif(True, reason="needs root")
        def test_it():
            pass
    """,
}
SKIPPED_MODULE = """
    import pytest

    pytest.skip("needs numpy", allow_module_level=True)

    def test_it():
        pass
"""
PASSING_TEST = """
    def test_it():
        pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A test suite of its own, with wgpy's tests/conftest.py."""
    pytester.makeconftest(CONFTEST.read_text())
    return pytester


@pytest.mark.parametrize("where", SKIPPING_TESTS)
def test_in_ci_a_skip_is_a_failure_that_gives_the_skips_reason(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("CI", "true")
    suite.makepyfile(SKIPPING_TESTS[where])

    result = suite.runpytest()

    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1
    assert "skipped" not in outcomes
    result.stdout.fnmatch_lines(["*test_it - skipped in CI, where nothing may be: needs root"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("where", SKIPPING_TESTS)
def test_outside_ci_a_skip_stays_a_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.makepyfile(SKIPPING_TESTS[where])

    result = suite.runpytest("-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *needs root"])
    assert result.ret == pytest.ExitCode.OK


def test_in_ci_a_module_skipped_at_collection_fails_the_run_and_says_why(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    suite.makepyfile(test_skipped=SKIPPED_MODULE, test_passing=PASSING_TEST)

    result = suite.runpytest()

    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*skipped in CI, where nothing may be*", "test_skipped.py: needs numpy"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_in_ci_an_expected_failure_is_not_a_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.xfail(reason="wireguard-go is laxer")
        def test_it():
            assert False
        """
    )

    result = suite.runpytest()

    result.assert_outcomes(xfailed=1)
    assert result.ret == pytest.ExitCode.OK
