"""The README starts with the two commands and documents every environment variable settings read."""

from __future__ import annotations

import re

from tests.ops.support import ROOT


def _settings_env_vars() -> set[str]:
    source = (ROOT / "octopus" / "settings.py").read_text() + (ROOT / "apps" / "core" / "embedded.py").read_text()
    names = set(re.findall(r'(?:environ\.get|env_bool|env_list)\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'environ\[\s*"([A-Z][A-Z0-9_]+)"\s*\]', source))
    return names


def test_readme_starts_with_make_run_and_make_test():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make run", "make test"]
    assert readme.index("```") < readme.index("## What Octopus is")


def test_readme_documents_every_environment_variable():
    readme = (ROOT / "README.md").read_text()
    names = _settings_env_vars()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "OCTOPUS_VAR_DIR"} <= names
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_readme_demo_logins_match_seed_demo():
    from apps.accounts.management.commands.seed_demo import demo_logins

    readme = (ROOT / "README.md").read_text()
    for role, email, password in demo_logins():
        assert f"| {role} | `{email}` | `{password}` |" in readme
