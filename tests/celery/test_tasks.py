"""Celery: heartbeat through a real worker, firm scope per task (target 33), schedules in code."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction

from apps.core import tenancy
from apps.core.tasks import HEARTBEAT_KEY, firm_task, heartbeat, last_heartbeat
from tests.celery import probe_tasks
from tests.celery.probe_tasks import read_report
from tests.celery_support import wait_for


def _audit(firm_id: int, action: str) -> None:
    from apps.audit.services import Actor, audit_record

    with transaction.atomic():
        audit_record(firm_id=firm_id, action=action, actor=Actor.system("test"))


# --- settings (target 44) -----------------------------------------------------------------------


def test_celery_settings_for_at_least_once_delivery():
    from octopus.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    # longer than the longest task (hard limit) so a slow task is not redelivered while running
    assert app.conf.broker_transport_options["visibility_timeout"] > app.conf.task_time_limit
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert heartbeat.acks_late is True
    assert probe_tasks.probe_firm.acks_late is True


# --- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat_task_records_the_worker():
    assert last_heartbeat() is None
    record = heartbeat.apply(kwargs={"source": "manual"}).get()
    stored = last_heartbeat()
    assert stored["source"] == "manual"
    assert stored["at"] == record["at"]
    assert 0 <= stored["age_seconds"] < 5
    assert json.loads(cache.get(HEARTBEAT_KEY))["hostname"] == record["hostname"]


@pytest.mark.celery_worker
def test_heartbeat_sent_with_delay_runs_in_a_real_worker(celery_worker):
    assert last_heartbeat() is None
    heartbeat.delay(source="test-delay")
    beat = wait_for(last_heartbeat, timeout=30)
    assert beat["source"] == "test-delay"
    assert beat["hostname"] == celery_worker.name
    assert "core.heartbeat" in celery_worker.log()


# --- firm scope per task (target 33) ------------------------------------------------------------


def test_firm_task_enters_and_leaves_the_scope(firm_a, firm_b):
    _audit(firm_a.firm.pk, "test.a")
    _audit(firm_b.firm.pk, "test.b")
    probe_tasks.probe_firm.apply(args=(firm_a.firm.pk, "a"))
    probe_tasks.probe_firm.apply(args=(firm_b.firm.pk, "b"))
    probe_tasks.probe_no_firm.apply(args=("none",))
    assert read_report("a")["scope"] == firm_a.firm.pk
    assert read_report("a")["actions"] == ["test.a"]
    assert read_report("b")["scope"] == firm_b.firm.pk
    assert read_report("b")["actions"] == ["test.b"]
    assert read_report("none") == {"pid": read_report("a")["pid"], "scope": None, "active": False,
                                   "actions": "refused"}
    assert tenancy.scope_is_active() is False


def test_firm_task_resets_scope_when_it_raises_and_guards_against_leaky_tasks(firm_a):
    result = probe_tasks.probe_firm_fails.apply(args=(firm_a.firm.pk, "fail"))
    assert isinstance(result.result, RuntimeError)
    assert read_report("fail")["scope"] == firm_a.firm.pk
    assert tenancy.scope_is_active() is False
    probe_tasks.probe_leaky.apply(args=(firm_a.firm.pk, "leak"))
    assert read_report("leak")["scope"] == firm_a.firm.pk
    assert tenancy.scope_is_active() is False  # task_postrun cleared what the task leaked


@pytest.mark.parametrize("bad", ["1", None, 1.0, True])
def test_firm_task_refuses_a_firm_id_that_is_not_an_int(bad):
    result = probe_tasks.probe_firm.apply(args=(bad, "bad"))
    assert isinstance(result.result, TypeError)
    assert "firm_id must be an int" in str(result.result)
    assert read_report("bad") is None


def test_firm_task_with_bind_passes_the_task_and_firm_id():
    @firm_task(bind=True, name="tests.bound_probe")
    def bound(self, firm_id, extra):
        return [self.name, firm_id, extra, tenancy.current_firm_id()]

    assert bound.apply(args=(7, "x")).get() == ["tests.bound_probe", 7, "x", 7]
    assert bound.acks_late is True


@pytest.mark.celery_worker
def test_task_for_firm_b_after_firm_a_in_the_same_worker_process_sees_no_firm_a(celery_worker_factory, firm_a, firm_b):
    _audit(firm_a.firm.pk, "test.a")
    _audit(firm_b.firm.pk, "test.b")
    celery_worker_factory(includes=["tests.celery.probe_tasks"])
    # solo pool: one process runs them in order
    probe_tasks.probe_firm.delay(firm_a.firm.pk, "a")
    probe_tasks.probe_leaky.delay(firm_a.firm.pk, "leak")
    probe_tasks.probe_firm.delay(firm_b.firm.pk, "b")
    probe_tasks.probe_no_firm.delay("none")
    none = wait_for(lambda: read_report("none"), timeout=30)
    a, leak, b = read_report("a"), read_report("leak"), read_report("b")
    assert a["pid"] == leak["pid"] == b["pid"] == none["pid"]
    assert a["scope"] == firm_a.firm.pk and a["actions"] == ["test.a"]
    assert b["scope"] == firm_b.firm.pk and b["actions"] == ["test.b"]
    assert none["scope"] is None and none["active"] is False and none["actions"] == "refused"


# --- schedules in code --------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_schedules_is_idempotent_and_restores_edits(capsys):
    from django_celery_beat.models import PeriodicTask

    from apps.core.schedules import MANAGED_MARK, all_schedules

    n = len(all_schedules())  # every app's schedules (platform heartbeat, market data feed, …)
    PeriodicTask.objects.all().delete()  # start from an empty table (rolled back after the test)
    call_command("sync_schedules")
    assert f"{n} created, 0 updated, 0 unchanged, 0 disabled" in capsys.readouterr().out
    row = PeriodicTask.objects.get(name="platform: heartbeat")
    assert (row.task, row.interval.every, row.interval.period, json.loads(row.kwargs), row.enabled) == (
        "core.heartbeat", 30, "seconds", {"source": "beat"}, True)
    call_command("sync_schedules")
    assert f"0 created, 0 updated, {n} unchanged, 0 disabled" in capsys.readouterr().out
    assert PeriodicTask.objects.filter(name="platform: heartbeat").count() == 1

    row.enabled = False
    row.save()
    PeriodicTask.objects.create(name="old: gone from code", task="core.heartbeat", interval=row.interval,
                                description=MANAGED_MARK)
    PeriodicTask.objects.create(name="hand made", task="core.heartbeat", interval=row.interval)
    call_command("sync_schedules")
    assert f"0 created, 1 updated, {n - 1} unchanged, 1 disabled" in capsys.readouterr().out
    assert PeriodicTask.objects.get(name="platform: heartbeat").enabled is True
    assert PeriodicTask.objects.get(name="old: gone from code").enabled is False
    assert PeriodicTask.objects.get(name="hand made").enabled is True


def test_every_schedule_names_a_registered_task():
    from apps.core.schedules import all_schedules
    from octopus.celery import app

    app.loader.import_default_modules()
    names = [s.task for s in all_schedules()]
    assert "core.heartbeat" in names
    assert [n for n in names if n not in app.tasks] == []


def test_services_heartbeat_check_for_health_checks(capsys):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no heartbeat recorded: Celery beat or worker is not running"):
        call_command("services", "heartbeat")
    record = heartbeat.apply(kwargs={"source": "beat"}).get()
    call_command("services", "heartbeat", "--max-age", "90")
    assert capsys.readouterr().out.startswith(f"heartbeat ok: 0 s ago by {record['hostname']} [beat]")
    stale = {**record, "ts": record["ts"] - 120}
    cache.set(HEARTBEAT_KEY, json.dumps(stale), timeout=None)
    with pytest.raises(CommandError, match=r"last heartbeat 120 s ago \(> 90 s\)"):
        call_command("services", "heartbeat", "--max-age", "90")


@pytest.mark.celery_worker
def test_a_task_whose_worker_process_is_sigkilled_is_redelivered(celery_worker_factory):
    """acks_late + task_reject_on_worker_lost (target 44): the message comes back to a new process."""
    import os
    import signal

    worker = celery_worker_factory(includes=["tests.celery.probe_tasks"], pool="prefork", concurrency=1)
    probe_tasks.probe_killed_once.delay("kill")
    started = wait_for(lambda: read_report("kill:started"), timeout=30)
    assert started["pid"] != worker.proc.pid  # a pool child, not the main process
    os.kill(started["pid"], signal.SIGKILL)
    done = wait_for(lambda: read_report("kill:done"), timeout=60)
    assert done["attempt"] == 2
    assert done["pid"] != started["pid"]
    assert worker.alive()
    assert "WorkerLostError" in worker.log() or "signal 9" in worker.log()
