"""Reliability target 29: cross-firm escapes are rare, reviewed, and listed here.

`unscoped()` (a deliberate query across firms) and `.objects.all()` are allowed only in the
files below, each with the number of uses that was reviewed. A new use anywhere else, or another
use in a listed file, fails this test until someone has looked at it and updated the list.
"""

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATTERN = re.compile(r"\bunscoped\(\)|\.objects\.all\(\)")

REVIEWED = {
    "apps/audit/selectors.py": 1,  # the audit selectors filter by firm explicitly (events include the platform chain)
    "apps/core/api.py": 1,  # FirmScoped views: base queryset, then filtered by request.firm
    "apps/core/admin.py": 3,  # admin querysets: firm filter for members, everything for platform superusers
    "apps/core/management/commands/field_keys_rotate.py": 1,  # key rotation re-encrypts every firm's secrets
    "apps/orders/routing.py": 1,  # the outbox relay finds stuck orders of every firm, then acts in each firm's scope
    "apps/orders/brokers/paper.py": 1,  # the paper venue finds working orders of every firm, then matches per firm
    "apps/orders/reconcile.py": 1,  # the scheduled reconciler lists every firm's live portfolios, then acts per firm
    "apps/orders/management/commands/reconcile_orders.py": 1,  # operator command across firms, per-firm reports
    "apps/orders/management/commands/alpaca_trade_stream.py": 1,  # the operator names the portfolio
    "apps/orders/algo_services.py": 1,  # the algo scheduler finds due algos of every firm, then ticks each in its scope
}


def uses() -> Counter:
    found = Counter()
    for path in (ROOT / "apps").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if "/migrations/" in rel or rel in {"apps/core/tenancy.py", "apps/core/models.py"}:
            continue
        count = len(PATTERN.findall(path.read_text()))
        if count:
            found[rel] = count
    return found


def test_cross_firm_queries_appear_only_where_reviewed():
    assert dict(uses()) == REVIEWED
