"""The skip policy of CI, a pytest plugin (tests/conftest.py registers it; `-p tests.skip_policy` elsewhere).

With `LMFORGE_NO_SKIPS=1` (.ci/run sets it), a test skipped for a reason that is not on `ALLOWED_SKIPS` fails the
run: a test that CI silently skips proves nothing. The terminal summary lists every skip and whether it is allowed
(pytest's own summary line gives the counts). The policy only turns a passing run into a failing one: every other
exit code, 5 (no tests collected) included, is left as pytest set it. Without the variable, skips are listed, not
enforced. This module imports only pytest and the standard library.
"""

from __future__ import annotations

import os
import re

import pytest

SKIP_POLICY_ENV = "LMFORGE_NO_SKIPS"

# reason (a regular expression, matched at the start of the skip's reason) -> why CI accepts the skip
ALLOWED_SKIPS: dict[str, str] = {
    r"shared data folder not found": (
        "the shared datasets (../shared/data: SQuAD, DialogSum, WikiText-2, Tiny Shakespeare) are not part of the "
        "repository and cannot be downloaded offline; the tests that read them skip, with this reason, without them "
        "(the `shared_data` fixture of tests/conftest.py)"
    ),
    # A GPU-only test would be allowed here, e.g. r"needs a CUDA GPU": "CI machines have no GPU". There is none today.
}

_SKIPS: list[tuple[str, str]] = []  # (test id, reason) of every skip of this session


def enforced() -> bool:
    return os.environ.get(SKIP_POLICY_ENV) == "1"


def allowed(reason: str) -> bool:
    return any(re.match(pattern, reason) for pattern in ALLOWED_SKIPS)


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def refused() -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in _SKIPS if not allowed(reason)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append((report.nodeid, _reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPS.append((report.nodeid, _reason(report)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if enforced() and refused() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SKIPS and not enforced():
        return
    not_allowed = refused()
    terminalreporter.section("skip policy", sep="-", red=bool(not_allowed and enforced()))
    terminalreporter.line(
        f"{len(_SKIPS)} skipped: {len(_SKIPS) - len(not_allowed)} on the allow-list, {len(not_allowed)} not allowed"
        + (" (the run fails)" if not_allowed and enforced() else "")
        + ("" if enforced() else f" (enforced with {SKIP_POLICY_ENV}=1)")
    )
    for nodeid, reason in _SKIPS:
        verdict = "allowed" if allowed(reason) else ("NOT ALLOWED" if enforced() else "not on the allow-list")
        terminalreporter.line(f"  {verdict}: {nodeid}: {reason}")
