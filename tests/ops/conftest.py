import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def fresh_var_dir():
    """An empty OCTOPUS_VAR_DIR outside pytest's basetemp: concurrent pytest sessions chmod
    /tmp/pytest-of-<user> back to 0700, which the embedded PostgreSQL user could then not traverse."""
    path = Path(tempfile.mkdtemp(prefix="octopus-var-"))
    path.chmod(0o755)
    yield path / "var"
    shutil.rmtree(path, ignore_errors=True)
