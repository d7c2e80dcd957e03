"""A REAL Celery worker subprocess for tests: ``celery_worker`` / ``celery_worker_factory``.

The worker runs ``celery -A octopus worker`` against the test database (the name pytest-django
created, passed as DATABASE_URL) and the same Redis broker/cache as the test process (TESTING
settings: broker db 4, cache prefix ``octopus-test``). The fixtures need a transactional test
(rows must be committed for the worker to see them); the worker is stopped before the test's
database flush. Import them in a conftest: ``from tests.celery_support import celery_worker, ...``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def worker_env() -> dict[str, str]:
    from django.conf import settings

    env = os.environ.copy()
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        OCTOPUS_TESTING="1",
        OCTOPUS_EMBEDDED_AUTOSTART="0",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def _purge_broker() -> None:
    from octopus.celery import app

    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


def start_worker(tmp_path: Path, *, includes=(), pool: str = "solo", concurrency: int = 1,
                 ready_timeout: float = 45) -> WorkerProcess:
    _purge_broker()
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    log_path = tmp_path / f"{name.split('@')[0]}.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "octopus", "worker", "-l", "info", "-n", name,
        "--pool", pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
    ]
    for module in includes:
        cmd += ["--include", module]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=worker_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    worker = WorkerProcess(name=name, proc=proc, log_path=log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{worker.log()}")
        if " ready." in worker.log():
            return worker
        time.sleep(0.1)
    worker.stop(signal.SIGKILL)
    raise RuntimeError(f"celery worker not ready within {ready_timeout}s:\n{worker.log()}")


@pytest.fixture
def celery_worker_factory(transactional_db, tmp_path):
    """celery_worker_factory(includes=(...), pool="solo", concurrency=1) -> a started WorkerProcess."""
    started: list[WorkerProcess] = []

    def _start(**kwargs) -> WorkerProcess:
        worker = start_worker(tmp_path, **kwargs)
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()
    from django.db import connections

    connections.close_all()


@pytest.fixture
def celery_worker(celery_worker_factory) -> WorkerProcess:
    """One real worker (solo pool: every task runs in the same worker process, in order)."""
    return celery_worker_factory()


def wait_for(predicate, timeout: float = 20, interval: float = 0.1):
    """Poll predicate() until it returns a truthy value; return it, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")
