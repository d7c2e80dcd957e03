"""Serving: the production layout (gunicorn, WSGI) against the ASGI alternative (uvicorn).

Both serve a DRF view reading one PostgreSQL row (bench/_urls.py) with the production settings
(DEBUG=0, persistent database connections: CONN_MAX_AGE=600 with health checks), 2 worker
processes each, loaded by bench/_load.py at a fixed concurrency of 16 for BENCH_SECONDS (default
20) seconds after a 2 s warm-up. uvicorn runs with uvicorn[standard] (httptools + uvloop, which
sets TCP_NODELAY on every connection). The load generator shares the machine's CPUs with the
server, so compare the two figures with each other rather than with another machine.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench import _load

ROOT = Path(__file__).resolve().parents[1]
PATH = "/bench/one-row/"
CONCURRENCY = 16
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare() -> dict[str, str]:
    """Migrate (and create the row read) through the normal settings; return the server env."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("sync_schedules", stdout=io.StringIO())
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="bench._settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        OCTOPUS_FIELD_KEYS="5hWkFqC0sZ0zq1b0M3mB0VQk7b8mY6yHn2cJ9pX4tLw=",  # any well-formed Fernet key
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.pop("OCTOPUS_TESTING", None)
    return env


def _servers(port: int) -> dict[str, list[str]]:
    return {
        "gunicorn": [sys.executable, "-m", "gunicorn", "octopus.wsgi:application", "--workers", str(WORKERS),
                     "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        "uvicorn": [sys.executable, "-m", "uvicorn", "octopus.asgi:application", "--workers", str(WORKERS),
                    "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
                    "--no-access-log", "--log-level", "warning", "--lifespan", "off"],
    }


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=2) as resp:  # noqa: S310
                body = json.loads(resp.read())
                if resp.status == 200 and body.get("every"):
                    return body
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


def measure(name: str, env: dict[str, str], seconds: float) -> dict:
    port = _free_port()
    cmd = _servers(port)[name]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        row = _wait_ready(port, proc)
        # both workers up and connected before measuring
        for _ in range(50):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=5).read()  # noqa: S310
        result = _load.run(port, PATH, concurrency=CONCURRENCY, seconds=seconds)
        result["row"] = row
        result["command"] = " ".join(cmd[2:])
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> dict:
    seconds = float(os.environ.get("BENCH_SECONDS", "20"))
    env = _prepare()
    from django.conf import settings

    results = {name: measure(name, env, seconds) for name in ("gunicorn", "uvicorn")}
    g, u = results["gunicorn"], results["uvicorn"]
    ratio = round(g["req_per_s"] / u["req_per_s"], 2) if u["req_per_s"] else None
    summary = (
        f"serving ({CONCURRENCY} connections, {WORKERS} workers, {seconds:.0f} s): "
        f"gunicorn {g['req_per_s']:.0f} req/s p50 {g['p50_ms']} ms p99 {g['p99_ms']} ms; "
        f"uvicorn {u['req_per_s']:.0f} req/s p50 {u['p50_ms']} ms p99 {u['p99_ms']} ms; "
        f"gunicorn/uvicorn throughput ratio {ratio}"
    )
    return {
        "summary": summary,
        "view": f"GET {PATH}: DRF APIView reading one django_celery_beat IntervalSchedule row",
        "settings": {"DEBUG": False, "CONN_MAX_AGE": settings.DATABASES["default"]["CONN_MAX_AGE"],
                     "CONN_HEALTH_CHECKS": settings.DATABASES["default"]["CONN_HEALTH_CHECKS"]},
        "results": results,
        "ratio_gunicorn_over_uvicorn_req_per_s": ratio,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
