"""verify_audit over intact and tampered chains; the append-only trigger against raw SQL and the ORM."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_chain_verify
from tests.audit.helpers import record

pytestmark = pytest.mark.django_db


def run_verify(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def tamper(sql: str, params: list) -> None:
    """Go around the trigger, as an attacker with table-owner rights would."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush deferred FK checks so ALTER TABLE may run
        cur.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete")


def test_intact_chains_exit_zero_with_one_line_per_chain(firm_a, firm_b):
    record(firm_a.firm.pk, n=3)
    record(firm_b.firm.pk, n=2)
    record(None, n=1)
    code, out = run_verify()
    assert code == 0
    assert out.splitlines() == [
        "firm alpha-capital: 3 events checked, OK",
        "firm beta-capital: 2 events checked, OK",
        "platform chain: 1 events checked, OK",
    ]


def test_one_firm_only(firm_a, firm_b):
    record(firm_a.firm.pk, n=2)
    code, out = run_verify("--firm", "alpha-capital")
    assert (code, out) == (0, "firm alpha-capital: 2 events checked, OK\n")


def test_unknown_slug_is_a_command_error(firm_a):
    with pytest.raises(CommandError, match="No firm with slug 'nope'"):
        call_command("verify_audit", "--firm", "nope", stdout=StringIO())


def test_event_altered_in_sql_is_named(firm_a, firm_b):
    events = record(firm_a.firm.pk, n=4)
    record(firm_b.firm.pk, n=2)
    tamper("UPDATE audit_auditevent SET after = %s::jsonb WHERE id = %s", ['{"i": 99}', events[2].pk])
    code, out = run_verify()
    assert code == 1
    assert "firm alpha-capital: BROKEN at seq 3: content does not match its hash (the event was altered)" in out
    assert "firm beta-capital: 2 events checked, OK" in out


def test_one_character_of_the_actor_altered_is_detected(firm_a):
    events = record(firm_a.firm.pk, n=2)
    tamper("UPDATE audit_auditevent SET actor_label = 'testS' WHERE id = %s", [events[0].pk])
    assert run_verify("--firm", "alpha-capital") == (
        1,
        "firm alpha-capital: BROKEN at seq 1: content does not match its hash (the event was altered)\n",
    )


def test_rewritten_hash_breaks_the_next_link(firm_a):
    events = record(firm_a.firm.pk, n=3)
    tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, events[1].pk])
    report = audit_chain_verify(firm_id=firm_a.firm.pk)
    assert report.broken is not None and report.broken.seq == 2
    # and if the attacker also fixes the next prev_hash, seq 3's own hash gives it away
    tamper("UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s", ["f" * 64, events[2].pk])
    code, out = run_verify("--firm", "alpha-capital")
    assert code == 1 and "BROKEN at seq 2" in out


def test_deleted_middle_row_is_detected(firm_a):
    events = record(firm_a.firm.pk, n=5)
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    code, out = run_verify("--firm", "alpha-capital")
    assert code == 1
    assert out == "firm alpha-capital: BROKEN at seq 3: event #3 is missing (found #4)\n"


def test_platform_chain_break_is_named(firm_a):
    events = record(None, n=2)
    tamper("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [events[1].pk])
    code, out = run_verify()
    assert code == 1
    assert "platform chain: BROKEN at seq 2" in out


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_auditevent SET action = 'rewritten' WHERE id = %s", "DELETE FROM audit_auditevent WHERE id = %s"],
)
def test_raw_sql_update_and_delete_are_refused(firm_a, sql):
    event = record(firm_a.firm.pk)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, [event.pk])
    assert AuditEvent.objects.unscoped().get(pk=event.pk).action == "test.done"


def test_orm_update_delete_and_save_are_refused(firm_a):
    event = record(firm_a.firm.pk)[0]
    qs = AuditEvent.objects.unscoped().filter(pk=event.pk)
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        qs.update(action="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        qs.delete()
    event.action = "rewritten"
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        event.save()
    assert qs.get().action == "test.done"
    assert run_verify("--firm", "alpha-capital") == (0, "firm alpha-capital: 1 events checked, OK\n")


def test_deleting_the_actor_user_or_token_leaves_history_untouched(firm_a, make_token):
    from apps.accounts.models import ApiToken
    from apps.audit.models import ActorType
    from apps.audit.services import Actor, audit_record

    trader = firm_a.member("trader")
    make_token(trader, ["read"])
    token = ApiToken.objects.get(membership=trader)
    with transaction.atomic():
        audit_record(
            firm_id=firm_a.firm.pk,
            action="test.acted",
            actor=Actor(ActorType.TOKEN, "trader via token", user_id=trader.user_id, token_id=token.pk),
        )
    token_id, user_id = token.pk, trader.user_id
    token.delete()
    trader.user.delete()
    event = AuditEvent.objects.unscoped().get(action="test.acted")
    assert (event.actor_token_id, event.actor_user_id, event.actor_label) == (token_id, user_id, "trader via token")
    assert run_verify("--firm", "alpha-capital")[0] == 0
