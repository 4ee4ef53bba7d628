"""The skip policy of CI (tests/skip_policy.py): pytest run on a small test folder in a subprocess, with and without
`LMFORGE_NO_SKIPS=1`."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

TESTS = textwrap.dedent(
    """
    import pytest

    def test_passes():
        pass

    @pytest.mark.skip(reason="shared data folder not found at /nowhere (tests that need real datasets are skipped)")
    def test_needs_the_shared_data():
        pass

    def test_skips_for_no_good_reason():
        pytest.skip("the playwright package is not installed")
    """
)

# A module that skips while it is collected (its import needs something missing): a collection report, not a test's.
SKIPPED_MODULE = textwrap.dedent(
    """
    import pytest

    pytest.skip("the gguf package is not installed", allow_module_level=True)

    def test_never_collected():
        pass
    """
)


def pytest_in(folder: Path, *args: str, enforce: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "LMFORGE_NO_SKIPS"}
    env |= {"LMFORGE_NO_SKIPS": "1"} if enforce else {}
    env["PYTHONPATH"] = str(REPO_ROOT)  # `tests.skip_policy`, without the rest of this suite's conftest
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.skip_policy", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skip_policy")
    (root / "test_sample.py").write_text(TESTS, encoding="utf-8")
    (root / "test_skipped_module.py").write_text(SKIPPED_MODULE, encoding="utf-8")
    (root / "empty").mkdir()
    return root


def test_a_skip_outside_the_allow_list_fails_the_run(folder: Path) -> None:
    result = pytest_in(folder, "test_sample.py", enforce=True)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 passed, 2 skipped" in result.stdout
    assert "2 skipped: 1 on the allow-list, 1 not allowed (the run fails)" in result.stdout
    assert "  allowed: test_sample.py::test_needs_the_shared_data: shared data folder not found" in result.stdout
    assert (
        "  NOT ALLOWED: test_sample.py::test_skips_for_no_good_reason: the playwright package is not installed"
        in result.stdout
    )


def test_a_module_skipped_at_collection_fails_the_run_too(folder: Path) -> None:
    # with a passing test beside it (alone, the module leaves no test collected: exit code 5, kept as pytest set it)
    result = pytest_in(folder, "test_skipped_module.py", "test_sample.py", "-k", "test_passes", enforce=True)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 passed, 1 skipped" in result.stdout
    assert "1 skipped: 0 on the allow-list, 1 not allowed (the run fails)" in result.stdout
    assert "  NOT ALLOWED: test_skipped_module.py: the gguf package is not installed" in result.stdout


def test_allowed_skips_pass_and_the_policy_is_off_without_the_variable(folder: Path) -> None:
    only_allowed = pytest_in(folder, "test_sample.py", "-k", "not no_good_reason", enforce=True)
    assert only_allowed.returncode == 0, only_allowed.stdout[-3000:]
    assert "1 skipped: 1 on the allow-list, 0 not allowed" in only_allowed.stdout
    not_enforced = pytest_in(folder, "test_sample.py", enforce=False)
    assert not_enforced.returncode == 0, not_enforced.stdout[-3000:]
    assert "1 not allowed (enforced with LMFORGE_NO_SKIPS=1)" in not_enforced.stdout


def test_no_tests_collected_still_exits_with_5(folder: Path) -> None:
    result = pytest_in(folder / "empty", enforce=True)
    assert result.returncode == 5, result.stdout[-3000:]
