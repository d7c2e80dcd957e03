"""`manage.py platform` (what `make run` calls), for real: a temporary OCTOPUS_VAR_DIR, a free port,
web + worker + beat as subprocesses, SIGINT, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from apps.core.management.commands.platform import read_procfile
from tests.ops.support import PYTHON, ROOT, clean_env, free_port, pid_alive, port_answers


class Platform:
    def __init__(self, var_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.log_path = var_dir.parent / f"platform-{self.port}.log"
        self.out = open(self.log_path, "w")  # noqa: SIM115 - closed in wait()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [PYTHON, "manage.py", "platform", "--port", str(self.port), *args],
            cwd=ROOT, env=env or clean_env(var_dir), stdout=self.out, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:  # noqa: S310
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def wait_serving(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            if "platform | serving after" in self.log():
                return time.monotonic() - self.t0
            time.sleep(0.2)
        pytest.fail(f"platform not serving within {timeout}s:\n{self.log()}")

    def child_pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"platform \| started (\w+) \(pid (\d+)\)", self.log())}

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()
            if self.proc.poll() is None:
                self.proc.kill()


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, IndexError):
                continue
            if int(fields[1]) == parent:
                child = int(stat.parent.name)
                found.add(child)
                todo.append(child)
    return found


def test_dev_procfile_runs_web_worker_beat():
    processes = read_procfile(ROOT / "Procfile.dev")
    assert processes == {
        "web": "uvicorn octopus.asgi:application --host 127.0.0.1 --port $PORT",
        "worker": "celery -A octopus worker -l info --concurrency 2",
        "beat": "celery -A octopus beat -l info",
    }


def test_platform_serves_then_sigint_stops_children_and_services(fresh_var_dir):
    var_dir = fresh_var_dir
    run = Platform(var_dir, "--no-demo")
    seconds = run.wait_serving()
    print(f"platform serving after {seconds:.1f} s (fresh var dir: initdb + migrate)")
    assert run.get("/healthz") == 200
    assert run.get("/api/docs/") == 200
    assert run.get("/admin/login/") == 200
    children = run.child_pids()
    assert set(children) == {"web", "worker", "beat"}
    deadline = time.monotonic() + 60
    while not re.search(r"^worker \| .* ready\.$", run.log(), re.M):
        assert time.monotonic() < deadline, run.log()
        time.sleep(0.2)
    everything = set(children.values())
    for pid in children.values():
        everything |= _descendants(pid)
    assert len(everything) >= 5  # web, worker, beat and the worker's two prefork pool processes
    log = run.log()
    assert f"http://127.0.0.1:{run.port}/api/docs/" in log and f"http://127.0.0.1:{run.port}/admin/" in log
    assert "demo: skipped (--no-demo)" in log

    pg_url = re.search(r"postgres: embedded at (\S+)", log).group(1)
    pg_pid = int((var_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    redis_pid = int((var_dir / "redis" / "redis.pid").read_text())
    assert pid_alive(pg_pid) and pid_alive(redis_pid)

    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.log()
    log = run.log()
    assert "platform | stopped (received SIGINT)." in log
    assert "embedded postgres and redis stopped" in log
    assert [pid for pid in everything | {pg_pid, redis_pid} if pid_alive(pid)] == []
    assert not port_answers(run.port)
    assert not port_answers(int(pg_url.rsplit(":", 1)[1].split("/")[0]))

    # a second run reuses the data directory (no new initdb) and serves again
    version_mtime = (var_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns
    again = Platform(var_dir, "--no-demo", "--only", "web")
    print(f"second run serving after {again.wait_serving():.1f} s")
    assert again.get("/healthz") == 200
    again.proc.send_signal(signal.SIGTERM)
    assert again.wait() == 0, again.log()
    assert "platform | stopped (received SIGTERM)." in again.log()
    assert (var_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns == version_mtime


def test_a_child_that_dies_stops_everything_with_a_message(tmp_path):
    procfile = tmp_path / "Procfile.test"
    procfile.write_text(
        "web: uvicorn octopus.asgi:application --host 127.0.0.1 --port $PORT\n"
        "crash: python -c \"import time; time.sleep(4); raise SystemExit(3)\"\n"
    )
    # external services (the suite's own, but the development database, never the test database:
    # the platform migrates and syncs schedules there): the platform must not stop them on the way out
    db_url = settings.DATABASE_URL
    env = clean_env(tmp_path / "var", DATABASE_URL=db_url, REDIS_URL=settings.REDIS_URL)
    run = Platform(tmp_path / "var", "--no-demo", "--procfile", str(procfile), env=env)
    assert run.wait() == 1, run.log()
    log = run.log()
    assert "platform | ERROR: crash exited unexpectedly with code 3; stopping everything" in log
    assert "platform | postgres: external (DATABASE_URL)" in log
    web_pid = run.child_pids()["web"]
    assert not pid_alive(web_pid)
    assert not port_answers(run.port)
    assert "embedded" not in log.split("stopping web")[-1]  # external services were left alone
    import psycopg
    import redis

    with psycopg.connect(db_url) as conn:  # the external services still answer
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis.Redis.from_url(settings.REDIS_URL).ping() is True


def test_platform_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(tmp_path / "var", DATABASE_URL=os.environ.get("DATABASE_URL") or settings.DATABASE_URL,
                        REDIS_URL=settings.REDIS_URL)
        result = subprocess.run([PYTHON, "manage.py", "platform", "--port", str(port)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr


def test_platform_refuses_an_unknown_process_before_starting_anything(tmp_path):
    env = clean_env(tmp_path / "var", DATABASE_URL=settings.DATABASE_URL, REDIS_URL=settings.REDIS_URL)
    result = subprocess.run([PYTHON, "manage.py", "platform", "--port", str(free_port()), "--only", "web,nope"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "--only: unknown process(es) ['nope']; Procfile.dev has ['web', 'worker', 'beat']" in result.stderr
    assert "platform |" not in result.stdout  # nothing was started
