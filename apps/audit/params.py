"""Parsing the time bounds of audit queries (shared by the API and the pages)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

MSG_BAD_BOUND = "Use YYYY-MM-DD (midnight UTC) or an ISO 8601 date-time with a UTC offset."
MSG_TO_BEFORE_FROM = "'to' must be after 'from'."
MSG_TO_IN_FUTURE = (
    "'to' must not be in the future: an export covers a closed range, so the same range always gives the same file."
)


def parse_bound(value: str) -> datetime:
    """``2026-11-01`` → 2026-11-01T00:00Z; ``2026-11-01T09:30:00+01:00`` → that instant. Raises ValueError."""
    value = (value or "").strip()
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive date-time")
    return parsed.astimezone(UTC)
