import pytest
from django.contrib.auth.models import Permission  # noqa: F401  (guardian needs auth's models loaded)

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.grants import object_grant, object_revoke
from apps.core.tenancy import unscoped


def test_grant_within_the_firm_is_applied_and_audited(firm_a):
    trader = firm_a.member("trader").user
    owner = firm_a.member("owner").user
    assert not trader.has_perm("accounts.change_firm", firm_a.firm)

    object_grant(perm="accounts.change_firm", user=trader, obj=firm_a.firm, actor=Actor.for_user(owner))

    trader = type(trader).objects.get(pk=trader.pk)  # fresh permission cache
    assert trader.has_perm("accounts.change_firm", firm_a.firm)
    with unscoped():
        event = AuditEvent.objects.get(firm=firm_a.firm, action="grant.added")
    assert event.after == {"perm": "accounts.change_firm", "user": trader.email}

    object_revoke(perm="accounts.change_firm", user=trader, obj=firm_a.firm, actor=Actor.for_user(owner))
    trader = type(trader).objects.get(pk=trader.pk)
    assert not trader.has_perm("accounts.change_firm", firm_a.firm)


def test_grant_on_another_firms_object_is_refused_and_writes_nothing(firm_a, firm_b):
    trader_a = firm_a.member("trader").user
    with pytest.raises(DomainError) as err:
        object_grant(perm="accounts.change_firm", user=trader_a, obj=firm_b.firm, actor=Actor.system())
    assert err.value.code == "CROSS_FIRM_GRANT"
    assert not trader_a.has_perm("accounts.change_firm", firm_b.firm)
    with unscoped():
        assert not AuditEvent.objects.filter(action="grant.added").exists()
