"""The CI rules in tests/conftest.py, proven on a small throwaway suite run by a real pytest.

With `CI=true` a skipped test (or module) fails the run and is listed with its reason, also under
pytest-xdist; an unreachable database fails the tests that need it instead of skipping them.
Outside CI the same suite passes, the skips reported as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

SAMPLE_TESTS = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("no frobnicator on this machine")

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_expected_failure():
    assert False
"""

SAMPLE_SKIPPED_MODULE = """
import pytest

pytest.importorskip("no_such_module_for_datafix")

def test_never_collected():
    assert True
"""

SAMPLE_WAREHOUSE = """
def test_needs_a_warehouse(warehouse_url):
    assert warehouse_url
"""

ONE_WORKER_OR_TWO = pytest.mark.parametrize(
    "workers", [pytest.param([], id="serial"), pytest.param(["-n", "2"], id="xdist")]
)


def run_suite(
    folder: Path, tests: dict[str, str], *args: str, ci: bool, conftest_tail: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run pytest on `tests` next to a copy of our conftest, with or without `CI=true`."""
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -ra --strict-markers\n")
    (folder / "conftest.py").write_text(CONFTEST.read_text() + conftest_tail)
    for name, source in tests.items():
        (folder / name).write_text(source)
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "CI" and not name.startswith("PYTEST_")
    }
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", "pytest.ini", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@ONE_WORKER_OR_TWO
def test_in_ci_a_skipped_test_fails_the_run_and_is_listed(tmp_path: Path, workers) -> None:
    result = run_suite(tmp_path, {"test_sample.py": SAMPLE_TESTS}, *workers, ci=True)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "CI=true: skipped tests fail the run" in result.stdout
    listed = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED test_")]
    assert len(listed) == 1, result.stdout
    assert listed[0].startswith("SKIPPED test_sample.py::test_skips - no frobnicator")
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout


@ONE_WORKER_OR_TWO
def test_in_ci_a_skipped_module_fails_the_run(tmp_path: Path, workers) -> None:
    tests = {"test_sample.py": "def test_runs():\n    assert True\n"}
    tests["test_optional.py"] = SAMPLE_SKIPPED_MODULE
    result = run_suite(tmp_path, tests, *workers, ci=True)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "could not import 'no_such_module_for_datafix'" in result.stdout


def test_outside_ci_skips_are_reported_and_the_run_passes(tmp_path: Path) -> None:
    result = run_suite(tmp_path, {"test_sample.py": SAMPLE_TESTS}, "-n", "2", ci=False)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "CI=true" not in result.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout


# Port 9 (discard) has no PostgreSQL behind it on the test machine: connections are refused.
UNREACHABLE_POSTGRES = "\nPOSTGRES_PORT = 9\n"


@pytest.mark.parametrize(
    ("ci", "exit_code", "summary", "also_said"),
    [
        pytest.param(
            True,
            pytest.ExitCode.TESTS_FAILED,
            "1 passed, 1 error",
            "CI=true: tests needing it must not be skipped",
            id="fails-in-ci",
        ),
        pytest.param(False, pytest.ExitCode.OK, "1 passed, 1 skipped", "", id="skips-outside-ci"),
    ],
)
def test_unreachable_postgres(
    tmp_path: Path, ci: bool, exit_code: pytest.ExitCode, summary: str, also_said: str
) -> None:
    tests = {"test_sample.py": SAMPLE_WAREHOUSE}
    result = run_suite(tmp_path, tests, ci=ci, conftest_tail=UNREACHABLE_POSTGRES)
    assert result.returncode == exit_code, result.stdout
    assert summary in result.stdout
    assert "PostgreSQL is not reachable on 127.0.0.1:9" in result.stdout
    assert also_said in result.stdout
