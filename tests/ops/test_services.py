"""`manage.py services status|start|stop` over the embedded PostgreSQL and Redis, for real,
in a temporary OCTOPUS_VAR_DIR (so the suite's own services are never touched)."""

from __future__ import annotations

import json
import re

import psycopg
import redis
from django.conf import settings

from tests.ops.support import clean_env, manage, pid_alive, port_answers


def _parse(stdout: str) -> dict[str, dict]:
    rows = {}
    for match in re.finditer(r"^  (postgres|redis)\s+(running|stopped)\s+url=(\S+)\s+pid=(\S+)\s+data=(\S+)$",
                             stdout, re.M):
        name, word, url, pid, data = match.groups()
        rows[name] = {"running": word == "running", "url": url, "pid": None if pid == "-" else int(pid),
                      "data": data}
    return rows


def test_services_start_status_stop_in_a_fresh_var_dir(fresh_var_dir):
    tmp_path = fresh_var_dir
    env = clean_env(tmp_path)

    before = manage("services", "status", env=env)
    assert before.returncode == 0, before.stderr
    assert {k: v["running"] for k, v in _parse(before.stdout).items()} == {"postgres": False, "redis": False}
    assert not (tmp_path / "pgdata" / "PG_VERSION").exists()  # status started nothing

    started = manage("services", "start", env=env)
    assert started.returncode == 0, started.stderr
    rows = _parse(started.stdout)
    assert rows["postgres"]["running"] and rows["redis"]["running"]
    assert rows["postgres"]["data"] == str(tmp_path / "pgdata")
    assert rows["redis"]["data"] == str(tmp_path / "redis")
    assert f"connect: psql {rows['postgres']['url']}" in started.stdout
    assert f"connect: redis-cli -u {rows['redis']['url']}" in started.stdout
    assert json.loads((tmp_path / "services.json").read_text())["postgres"]["url"] == rows["postgres"]["url"]
    with psycopg.connect(rows["postgres"]["url"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("octopus",)
    assert redis.Redis.from_url(rows["redis"]["url"]).ping() is True
    pg_pid, redis_pid = rows["postgres"]["pid"], rows["redis"]["pid"]
    assert pid_alive(pg_pid) and pid_alive(redis_pid)

    again = manage("services", "start", env=env)  # idempotent: the same processes
    assert {k: v["pid"] for k, v in _parse(again.stdout).items()} == {"postgres": pg_pid, "redis": redis_pid}

    stopped = manage("services", "stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert {k: v["running"] for k, v in _parse(stopped.stdout).items()} == {"postgres": False, "redis": False}
    assert not pid_alive(pg_pid) and not pid_alive(redis_pid)
    pg_port = int(rows["postgres"]["url"].rsplit(":", 1)[1].split("/")[0])
    redis_port = int(rows["redis"]["url"].rsplit(":", 1)[1])
    assert not port_answers(pg_port) and not port_answers(redis_port)

    # and they stay stopped: neither the stop's own settings import nor a later status restarts them
    after = manage("services", "status", env=env)
    assert {k: v["running"] for k, v in _parse(after.stdout).items()} == {"postgres": False, "redis": False}
    assert not port_answers(pg_port) and not port_answers(redis_port)


def test_external_services_are_reported_and_never_stopped(fresh_var_dir):
    tmp_path = fresh_var_dir
    db_url = f"postgres://postgres@{settings.DATABASES['default']['HOST']}:{settings.DATABASES['default']['PORT']}/x"
    env = clean_env(tmp_path, DATABASE_URL=db_url.replace("postgres@", "postgres:s3cret@"),
                    REDIS_URL=settings.REDIS_URL)
    result = manage("services", "stop", env=env)
    assert result.returncode == 0, result.stderr
    assert "Both services are external (DATABASE_URL, REDIS_URL); nothing to stop." in result.stdout
    assert re.search(r"^  postgres\s+external\s+postgres://postgres:\*\*\*@", result.stdout, re.M)
    assert "s3cret" not in result.stdout
    assert re.search(rf"^  redis\s+external\s+{re.escape(settings.REDIS_URL)}\s+\(from REDIS_URL", result.stdout, re.M)
    # the suite's own services (used here as the "external" ones) still answer
    assert redis.Redis.from_url(settings.REDIS_URL).ping() is True
    assert not (tmp_path / "pgdata").exists()
