import pytest

from apps.audit.models import AuditEvent
from apps.core.tenancy import FirmScopeError, firm_scope, unscoped


@pytest.mark.django_db
def test_firm_owned_query_without_scope_is_refused():
    with pytest.raises(FirmScopeError):
        list(AuditEvent.objects.all())


def test_firm_scope_filters_to_that_firm(firm_a, firm_b):
    from django.db import transaction

    from apps.audit.services import Actor, audit_record

    with transaction.atomic():
        audit_record(firm_id=firm_a.firm.pk, action="test.a", actor=Actor.system())
        audit_record(firm_id=firm_b.firm.pk, action="test.b", actor=Actor.system())
    with firm_scope(firm_a.firm.pk):
        assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.a"]
    with unscoped():
        assert sorted(AuditEvent.objects.values_list("action", flat=True)) == ["test.a", "test.b"]
