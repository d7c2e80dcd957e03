"""Procfile, docker-compose.yml, Dockerfile and the proxy config describe the same deployment."""

from __future__ import annotations

import re
import shlex

import yaml

from apps.core.management.commands.platform import read_procfile
from tests.ops.support import ROOT

PROCESSES = ["release", "web", "ws", "worker", "beat"]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_procfile_names_the_production_processes():
    procfile = read_procfile(ROOT / "Procfile")
    assert list(procfile) == PROCESSES
    assert shlex.split(procfile["web"])[:2] == ["gunicorn", "octopus.wsgi:application"]
    assert "--workers ${WEB_CONCURRENCY:-3}" in procfile["web"]
    assert shlex.split(procfile["ws"])[:2] == ["uvicorn", "octopus.asgi:application"]
    assert shlex.split(procfile["worker"])[:4] == ["celery", "-A", "octopus", "worker"]
    assert shlex.split(procfile["beat"]) == ["celery", "-A", "octopus", "beat", "-l", "info"]
    assert shlex.split(procfile["release"]) == [
        "sh", "-c", "python manage.py migrate --noinput && python manage.py sync_schedules"]


def test_compose_runs_the_procfile_processes_with_the_same_commands():
    services = compose()["services"]
    procfile = read_procfile(ROOT / "Procfile")
    assert set(services) == {"postgres", "redis", "proxy", *PROCESSES}
    for name, command in procfile.items():
        assert shlex.split(services[name]["command"]) == shlex.split(command), name


def test_compose_health_checks_and_start_order():
    services = compose()["services"]
    for name in ("postgres", "redis", "web", "ws", "worker", "beat", "proxy"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "ws", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["release"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["DEBUG"] == "0"
        assert services[name]["build"] == "."
    assert services["release"]["restart"] == "no"
    assert services["proxy"]["depends_on"] == {"web": {"condition": "service_healthy"},
                                               "ws": {"condition": "service_healthy"}}
    assert services["proxy"]["volumes"] == ["./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro"]
    # secrets are required from the environment, never defaulted
    env = services["web"]["environment"]
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert ":${POSTGRES_PASSWORD:?" in env["DATABASE_URL"] and ":${REDIS_PASSWORD:?" in env["REDIS_URL"]


def test_proxy_routes_ws_to_the_asgi_server_and_the_rest_to_wsgi():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"upstream web \{\s*server web:8000;", conf)
    assert re.search(r"upstream ws \{\s*server ws:8001;", conf)
    ws_block = re.search(r"location /ws/ \{(.*?)\n    \}", conf, re.S).group(1)
    assert "proxy_pass http://ws;" in ws_block
    assert "proxy_set_header Upgrade $http_upgrade;" in ws_block
    assert "proxy_set_header Connection $connection_upgrade;" in ws_block
    root_block = re.search(r"location / \{(.*?)\n    \}", conf, re.S).group(1)
    assert "proxy_pass http://web;" in root_block
    assert "X-Forwarded-Proto" in root_block


def test_dockerfile_builds_from_the_pinned_base_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "\nFROM python:3.11-slim" in dockerfile
    assert "RUN pip install -r requirements/base.txt" in dockerfile
    assert "\nUSER octopus\n" in dockerfile
    assert "collectstatic --noinput" in dockerfile
