"""Report and control the embedded PostgreSQL and Redis: ``manage.py services status|start|stop``.

Settings do not auto-start the services for this command (see EMBEDDED_AUTOSTART), so ``stop``
really leaves them stopped and ``status`` reports the truth instead of starting them. When
DATABASE_URL / REDIS_URL point at external services, those are reported and never touched.
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from apps.core import embedded

EXTERNAL_ENV = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}
CLIENTS = {"postgres": "psql", "redis": "redis-cli -u"}


def _redact(url: str) -> str:
    """Hide a password in an external URL (postgres://user:secret@host → postgres://user:***@host)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Command(BaseCommand):
    help = "Report (status), start or stop the embedded PostgreSQL and Redis of this checkout."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "start", "stop", "heartbeat"])
        parser.add_argument("--max-age", type=float, default=90,
                            help="heartbeat: exit 1 unless a worker ran the heartbeat within this many seconds")

    def handle(self, *args, action: str, max_age: float, **options):
        external = {name: os.environ.get(var, "") for name, var in EXTERNAL_ENV.items()}
        if action == "heartbeat":
            return self._check_heartbeat(max_age)
        if action == "start":
            if not external["postgres"]:
                embedded.ensure_postgres()
            if not external["redis"]:
                embedded.ensure_redis()
        elif action == "stop":
            if external["postgres"] and external["redis"]:
                self.stdout.write("Both services are external (DATABASE_URL, REDIS_URL); nothing to stop.")
            else:
                self._stop(external)
        self._report(external)

    def _stop(self, external: dict[str, str]) -> None:
        # Stop only what is embedded; the lock keeps a concurrent start from racing the stop.
        with embedded._lock():
            if not external["redis"]:
                embedded._redis_stop()
            if not external["postgres"]:
                embedded._pg_stop()
        still = [s.name for s in embedded.status() if s.running and not external[s.name]]
        if still:
            raise CommandError(f"could not stop: {', '.join(still)}")

    def _report(self, external: dict[str, str]) -> None:
        self.stdout.write(f"Embedded services of {embedded.var_dir()}:")
        for state in embedded.status():
            if external[state.name]:
                self.stdout.write(
                    f"  {state.name:<9} external  {_redact(external[state.name])}  "
                    f"(from {EXTERNAL_ENV[state.name]}; not started or stopped here)"
                )
                continue
            word = "running" if state.running else "stopped"
            pid = state.pid if state.running else "-"
            self.stdout.write(f"  {state.name:<9} {word:<8}  url={state.url or '-'}  pid={pid}  data={state.data_dir}")
            if state.running:
                self.stdout.write(f"            connect: {CLIENTS[state.name]} {state.url}")
        self._report_heartbeat(external)

    def _check_heartbeat(self, max_age: float) -> None:
        """For health checks: worker and beat both run when the beat-sent heartbeat is fresh."""
        from apps.core.tasks import last_heartbeat

        beat = last_heartbeat()
        if beat is None:
            raise CommandError("no heartbeat recorded: Celery beat or worker is not running")
        if beat["age_seconds"] > max_age:
            raise CommandError(f"last heartbeat {beat['age_seconds']:.0f} s ago (> {max_age:.0f} s) by {beat['hostname']}")
        self.stdout.write(f"heartbeat ok: {beat['age_seconds']:.0f} s ago by {beat['hostname']} [{beat['source']}]")

    def _report_heartbeat(self, external: dict[str, str]) -> None:
        running = {s.name: s.running for s in embedded.status()}
        if not (external["redis"] or running["redis"]):
            return
        from apps.core.tasks import last_heartbeat

        try:
            beat = last_heartbeat()
        except Exception as exc:  # noqa: BLE001 - status must report, not crash
            self.stdout.write(f"  heartbeat  unknown ({exc.__class__.__name__})")
            return
        if beat is None:
            self.stdout.write("  heartbeat  none recorded (Celery worker/beat not running yet)")
        else:
            self.stdout.write(
                f"  heartbeat  last at {beat['at']} ({beat['age_seconds']:.0f} s ago) by {beat['hostname']}"
                f" [{beat['source']}]"
            )
