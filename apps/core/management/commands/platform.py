"""``manage.py platform`` (``make run``): the whole platform in the foreground.

Starts the embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL point elsewhere),
migrates, syncs the Celery schedules, loads the demo (``seed_demo``, when that command exists),
then runs the processes of ``Procfile.dev`` (web: HTTP + WebSockets from one ASGI process,
worker, beat) with their output prefixed by name. Ctrl-C (SIGINT) or SIGTERM stops every child
and then the embedded services; a child that dies stops everything with a message saying which.
Running it again reuses the data under var/ (database, demo firm, schedules).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError

from apps.core import embedded

PROCFILE_DEV = Path(settings.BASE_DIR) / "Procfile.dev"
STOP_GRACE_SECONDS = 10


def read_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines, in order; comments and blank lines skipped."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if not match:
            raise CommandError(f"{path.name}: cannot parse line {line!r}")
        processes[match.group(1)] = match.group(2)
    return processes


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


class _Stop(Exception):
    """Something failed (a child died, web never answered): stop everything, exit 1."""


class _Signalled(Exception):
    """SIGINT/SIGTERM: stop everything, exit 0."""


class Command(BaseCommand):
    help = "Run the whole platform (services, migrate, demo, web + worker + beat) in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="skip seed_demo")
        parser.add_argument("--keep-services", action="store_true",
                            help="leave the embedded PostgreSQL/Redis running on exit")
        parser.add_argument("--only", default="", help="comma-separated subset of Procfile.dev processes")
        parser.add_argument("--procfile", type=Path, default=PROCFILE_DEV, help="default: Procfile.dev")

    def handle(self, *args, port: int, no_demo: bool, keep_services: bool, only: str, procfile: Path, **options):
        self.t0 = time.monotonic()
        self.children: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.external = {"postgres": bool(os.environ.get("DATABASE_URL")), "redis": bool(os.environ.get("REDIS_URL"))}
        if _port_in_use("127.0.0.1", port):
            raise CommandError(f"port {port} is already in use (another `make run`?); stop it or use --port / PORT=")
        processes = read_procfile(procfile)
        if only:
            wanted = [p.strip() for p in only.split(",") if p.strip()]
            unknown = sorted(set(wanted) - set(processes))
            if unknown or not wanted:
                raise CommandError(f"--only: unknown process(es) {unknown}; {procfile.name} has {list(processes)}")
            processes = {name: cmd for name, cmd in processes.items() if name in wanted}
        stop_reason = ""
        exit_code = 0
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for sig in previous:
                signal.signal(sig, self._on_signal)
            self._prepare(no_demo)
            self._start_children(processes, port)
            self._wait_until_serving(port)
            self._supervise()
        except _Stop as stop:
            stop_reason, exit_code = str(stop), 1
            self.say(f"ERROR: {stop}")
        except (_Signalled, KeyboardInterrupt) as stop:
            stop_reason = str(stop) or "interrupted"
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self._stop_children()
            self._stop_services(keep_services)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.say(f"stopped ({stop_reason}).")
        if exit_code:
            sys.exit(exit_code)

    # --- steps ---------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        with self.lock:
            self.stdout.write(f"platform | {message}")
            self.stdout.flush()

    def _prepare(self, no_demo: bool) -> None:
        for state in embedded.status():
            if self.external[state.name]:
                self.say(f"{state.name}: external ({'DATABASE_URL' if state.name == 'postgres' else 'REDIS_URL'})")
            else:
                # settings started them at import; this is a no-op unless one died since
                url = embedded.ensure_postgres() if state.name == "postgres" else embedded.ensure_redis()
                self.say(f"{state.name}: embedded at {url} (data in {state.data_dir})")
        self.say("migrating the database ...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("sync_schedules", stdout=io.StringIO())
        self.say("celery beat schedules synced")
        if no_demo:
            self.say("demo: skipped (--no-demo)")
        elif "seed_demo" in get_commands():
            self.say("loading the demo firm (seed_demo) ...")
            call_command("seed_demo")
        else:
            self.say("demo: the seed_demo command does not exist yet; no demo firm loaded")
        self.say(f"ready to start processes after {time.monotonic() - self.t0:.1f} s")

    def _child_env(self) -> dict[str, str]:
        env = os.environ.copy()
        env["DATABASE_URL"] = settings.DATABASE_URL
        env["REDIS_URL"] = settings.REDIS_URL
        env["PYTHONUNBUFFERED"] = "1"
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
        return env

    def _start_children(self, processes: dict[str, str], port: int) -> None:
        env = self._child_env()
        env["PORT"] = str(port)
        width = max(len(name) for name in processes)
        for name, command in processes.items():
            argv = [os.path.expandvars(part) for part in shlex.split(command.replace("$PORT", str(port)))]
            proc = subprocess.Popen(  # noqa: S603 - commands from our own Procfile.dev
                argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
            )
            self.children[name] = proc
            threading.Thread(target=self._pump, args=(name.ljust(width), proc), daemon=True).start()
            self.say(f"started {name} (pid {proc.pid}): {' '.join(argv)}")

    def _pump(self, label: str, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.stdout.write(f"{label} | {line}")
                self.stdout.flush()

    def _wait_until_serving(self, port: int) -> None:
        if "web" not in self.children:
            return
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise _Stop(f"web did not answer {url} within 120 s")
        base = f"http://127.0.0.1:{port}"
        self.say(f"serving after {time.monotonic() - self.t0:.1f} s")
        self.say(f"  app       {base}/   (log in at {base}/accounts/login/)")
        self.say(f"  API docs  {base}/api/docs/   (schema {base}/api/schema/)")
        self.say(f"  admin     {base}/admin/")
        self.say("  demo logins: printed above by seed_demo; also listed in README.md (Demo logins)")
        self.say("  Ctrl-C stops web, worker, beat and the embedded services")

    def _check_children(self) -> None:
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                raise _Stop(f"{name} exited unexpectedly with code {code}; stopping everything")

    def _supervise(self) -> None:
        while True:
            self._check_children()
            time.sleep(0.2)

    def _on_signal(self, signum, frame) -> None:
        raise _Signalled(f"received {signal.Signals(signum).name}")

    def _stop_children(self) -> None:
        running = {name: p for name, p in self.children.items() if p.poll() is None}
        if not running:
            return
        self.say(f"stopping {', '.join(running)} ...")
        for proc in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, proc in running.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop within {STOP_GRACE_SECONDS} s; killing it")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        # a process group may still hold grandchildren (prefork pool); make sure none survive
        for proc in running.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _stop_services(self, keep: bool) -> None:
        if keep:
            self.say("embedded services left running (--keep-services)")
            return
        from django.db import connections

        connections.close_all()
        with embedded._lock():
            if not self.external["redis"]:
                embedded._redis_stop()
            if not self.external["postgres"]:
                embedded._pg_stop()
        stopped = [n for n, ext in self.external.items() if not ext]
        if stopped:
            self.say(f"embedded {' and '.join(stopped)} stopped")
