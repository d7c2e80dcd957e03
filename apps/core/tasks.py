"""Platform tasks and the rules every Celery task of Octopus follows.

* Tasks that write use ``acks_late`` (the default in settings, CELERY_TASK_ACKS_LATE): a worker
  killed mid-task gets the message redelivered, so a task must be safe to run twice.
* A task that acts for a firm takes ``firm_id`` explicitly as its first argument and is declared
  with ``@firm_task``: it enters ``firm_scope(firm_id)`` itself and leaves it afterwards, so the
  next task run by the same worker process starts with no firm context at all.
* Every task starts and ends with the scope cleared (task_prerun/task_postrun below), even a
  plain ``@shared_task`` after a task that leaked a scope.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from datetime import UTC, datetime

from celery import shared_task
from celery.signals import task_postrun, task_prerun

from apps.core import tenancy

HEARTBEAT_KEY = "platform:heartbeat"
HEARTBEAT_EVERY_SECONDS = 30

_task_scope_tokens: dict[str, object] = {}


@task_prerun.connect
def _clear_scope_before_task(task_id=None, **_):
    _task_scope_tokens[task_id] = tenancy.set_scope(None)


@task_postrun.connect
def _clear_scope_after_task(task_id=None, **_):
    token = _task_scope_tokens.pop(task_id, None)
    if token is not None:
        try:
            tenancy.reset_scope(token)
        except ValueError:  # created in another context; clearing is what matters
            tenancy.set_scope(None)
    else:
        tenancy.set_scope(None)


def firm_task(*task_args, **task_options):
    """``@firm_task`` / ``@firm_task(name=..., ...)``: a shared_task acting for one firm.

    The wrapped function is called as ``fn(firm_id, *args, **kwargs)`` (or ``fn(self, firm_id, ...)``
    with ``bind=True``) inside ``firm_scope(firm_id)``; the scope is reset when it returns or raises.
    """
    task_options.setdefault("acks_late", True)
    bind = task_options.get("bind", False)

    def decorate(fn):
        def run_scoped(firm_id, call):
            if isinstance(firm_id, bool) or not isinstance(firm_id, int):
                raise TypeError(f"{fn.__name__}: firm_id must be an int, got {firm_id!r}")
            token = tenancy.set_scope(None)
            try:
                with tenancy.firm_scope(firm_id):
                    return call()
            finally:
                tenancy.reset_scope(token)

        if bind:

            @functools.wraps(fn)
            def wrapper(self, firm_id, *args, **kwargs):
                return run_scoped(firm_id, lambda: fn(self, firm_id, *args, **kwargs))
        else:

            @functools.wraps(fn)
            def wrapper(firm_id, *args, **kwargs):
                return run_scoped(firm_id, lambda: fn(firm_id, *args, **kwargs))

        return shared_task(**task_options)(wrapper)

    if len(task_args) == 1 and callable(task_args[0]) and not task_options:
        return decorate(task_args[0])
    return decorate


@shared_task(name="core.heartbeat", acks_late=True, ignore_result=True, expires=HEARTBEAT_EVERY_SECONDS * 2)
def heartbeat(source: str = "beat") -> dict:
    """Record that a worker ran this task (sent by beat every 30 s, or by hand with source="manual")."""
    from celery import current_task
    from django.core.cache import cache

    hostname = getattr(getattr(current_task, "request", None), "hostname", None) or socket.gethostname()
    record = {"at": datetime.now(UTC).isoformat(), "ts": time.time(), "hostname": hostname, "source": source}
    cache.set(HEARTBEAT_KEY, json.dumps(record), timeout=None)
    return record


def last_heartbeat() -> dict | None:
    """The last heartbeat a worker recorded, with its age in seconds, or None."""
    from django.core.cache import cache

    raw = cache.get(HEARTBEAT_KEY)
    if not raw:
        return None
    record = json.loads(raw)
    record["age_seconds"] = max(0.0, time.time() - record["ts"])
    return record
