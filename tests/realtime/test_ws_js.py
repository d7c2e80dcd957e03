"""static/js/ws.js: sequence tracking, de-duplication, resync and backoff, under node's test runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_ws_client_module():
    result = subprocess.run(
        ["node", "--test", str(HERE / "ws_client.test.mjs")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 2" in result.stdout
    assert "# fail 0" in result.stdout
