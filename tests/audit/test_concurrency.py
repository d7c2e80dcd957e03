"""Concurrent writers of one chain: the advisory lock serializes them into 1..N*k with no gap."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_chain_verify
from apps.audit.services import Actor, audit_record
from tests.factories import FirmFactory

THREADS = 4
PER_THREAD = 25


def _writer(firm_id: int | None, worker: int, barrier: threading.Barrier, errors: list) -> None:
    try:
        barrier.wait(timeout=30)
        for i in range(PER_THREAD):
            with transaction.atomic():
                audit_record(
                    firm_id=firm_id,
                    action="test.concurrent",
                    actor=Actor.system(f"worker-{worker}"),
                    target_id=i,
                    after={"worker": worker, "i": i},
                )
    except Exception as exc:  # noqa: BLE001 - reported to the main thread
        errors.append(exc)
    finally:
        connection.close()  # each thread has its own connection


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("platform", [False, True], ids=["firm-chain", "platform-chain"])
def test_concurrent_writers_make_one_gapless_chain(platform):
    firm_id = None if platform else FirmFactory(slug="race").pk
    other = FirmFactory(slug="bystander").pk
    barrier = threading.Barrier(THREADS)
    errors: list = []
    threads = [threading.Thread(target=_writer, args=(firm_id, w, barrier, errors)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    qs = AuditEvent.objects.unscoped().filter(**({"firm__isnull": True} if platform else {"firm_id": firm_id}))
    seqs = list(qs.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, THREADS * PER_THREAD + 1))
    per_worker = {w: qs.filter(actor_label=f"worker-{w}").count() for w in range(THREADS)}
    assert per_worker == {w: PER_THREAD for w in range(THREADS)}
    report = audit_chain_verify(firm_id=firm_id)
    assert (report.ok, report.checked) == (True, THREADS * PER_THREAD)
    assert not AuditEvent.objects.unscoped().filter(firm_id=other).exists()
