""".ci/run exits non-zero when tests fail or when nothing ran; zero only for a real green run.

`make` and `chromium` are replaced by fakes on PATH; DATABASE_URL/REDIS_URL are set so the
machine's services are not probed."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tests.ops.support import ROOT

FAKE_MAKE = r"""#!/usr/bin/env bash
echo "fake make $*" >> "$FAKE_LOG"
[ "$1" = "install" ] && exit 0
junit=$(echo "$*" | sed -n 's/.*--junitxml=\([^ ]*\).*/\1/p')
case "$FAKE_MODE" in
  fail) printf '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="0"/></testsuites>' > "$junit"; exit 1;;
  none) exit 5;;
  empty) printf '<testsuites><testsuite tests="0" failures="0" errors="0" skipped="0"/></testsuites>' > "$junit";;
  skipped) printf '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="3"/></testsuites>' > "$junit";;
  green) printf '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1"/></testsuites>' > "$junit";;
esac
exit 0
"""


@pytest.fixture
def fake_bin(tmp_path):
    for name, body in {"make": FAKE_MAKE, "chromium": "#!/bin/sh\nexit 0\n"}.items():
        path = tmp_path / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def run_ci(fake_bin, mode: str) -> subprocess.CompletedProcess:
    # Under `make test` (as in CI itself) make exports PYTEST_ARGS and MAKEFLAGS; the nested run must not see them.
    inherited = {k: v for k, v in os.environ.items() if k not in {"PYTEST_ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env = {**inherited, "PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_MODE": mode,
           "FAKE_LOG": str(fake_bin / "make.log"), "CI_JUNIT": str(fake_bin / "junit.xml"),
           "DATABASE_URL": "postgres://ci@127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1"}
    return subprocess.run(["bash", str(ROOT / ".ci" / "run")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("mode", "code", "message"), [
    ("fail", 2, ""),
    ("none", 2, ""),
    ("empty", 1, "ci: FAILED (failures, or no test ran)"),
    ("skipped", 1, "ci: FAILED (failures, or no test ran)"),
])
def test_ci_run_is_red_on_failures_and_on_runs_where_nothing_ran(fake_bin, mode, code, message):
    result = run_ci(fake_bin, mode)
    assert result.returncode != 0
    assert message in result.stderr
    log = (fake_bin / "make.log").read_text().splitlines()
    assert log[0] == "fake make install"
    assert log[1].startswith(f"fake make test PYTEST_ARGS=--junitxml={fake_bin / 'junit.xml'}")


def test_ci_run_is_green_when_tests_pass(fake_bin):
    result = run_ci(fake_bin, "green")
    assert result.returncode == 0, result.stderr
    assert "ci: 3 tests, 2 passed, 1 skipped, 0 failed" in result.stdout
