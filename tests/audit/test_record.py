"""audit_record's contract: inside a transaction, and every stored value hashes as it reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_chain_verify
from apps.audit.services import Actor, RequestMeta, audit_record

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_refuses_to_run_outside_a_transaction(firm_a):
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        audit_record(firm_id=firm_a.firm.pk, action="x.y", actor=Actor.system())


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1e16, "g": 1.5e20, "h": -2.5e300},  # jsonb prints these as integers
        {"small": 1.5e-07, "one": 1.0, "third": 1 / 3, "neg_zero": -0.0},
        {"big": 2**70, "dec": Decimal("1.10"), "when": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)},
        {"nul": "a\x00b", "keys": {"\x00k": [1, "\x00"]}, "uni": "é\u2028😀"},
        [1, 2.0, None, True, "x"],
        "plain string",
        12.5,
        {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
    ],
)
def test_values_that_postgres_normalizes_still_verify(firm_a, value):
    with transaction.atomic():
        audit_record(firm_id=firm_a.firm.pk, action="x.values", actor=Actor.system(), before=value, after=value)
    report = audit_chain_verify(firm_id=firm_a.firm.pk)
    assert (report.ok, report.checked) == (True, 1), report.broken


def test_nul_bytes_in_request_metadata_do_not_fail_the_write(firm_a):
    meta = RequestMeta(ip="198.51.100.1", user_agent="curl\x00/8", request_id="r\x00id")
    with transaction.atomic():
        audit_record(
            firm_id=firm_a.firm.pk, action="x.meta", actor=Actor.system("sys\x00tem"), target_label="t\x00", meta=meta
        )
    event = AuditEvent.objects.unscoped().get(action="x.meta")
    assert (event.user_agent, event.request_id, event.actor_label, event.target_label) == (
        "curl/8",
        "rid",
        "system",
        "t",
    )
    assert audit_chain_verify(firm_id=firm_a.firm.pk).ok
