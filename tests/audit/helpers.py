from __future__ import annotations

from django.db import transaction

from apps.audit.services import Actor, audit_record


def record(firm_id: int | None, action: str = "test.done", n: int = 1, **kwargs) -> list:
    events = []
    for i in range(n):
        with transaction.atomic():
            events.append(
                audit_record(
                    firm_id=firm_id,
                    action=action,
                    actor=Actor.system("tests"),
                    target_type="thing",
                    target_id=i,
                    **{"after": {"i": i}, **kwargs},
                )
            )
    return events
