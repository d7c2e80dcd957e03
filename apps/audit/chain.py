"""Pure hashing of audit events: the canonical form and the chain check (no ORM)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64

# The fields that are hashed, in a fixed order. Adding a field is a chain format change.
HASHED_FIELDS = (
    "firm_id", "seq", "created_at", "actor_type", "actor_user_id", "actor_token_id", "actor_label",
    "action", "target_type", "target_id", "target_label", "before", "after", "ip", "user_agent", "request_id",
)


def canonical_json(row: Mapping[str, Any]) -> str:
    payload = {name: row.get(name) for name in HASHED_FIELDS}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(row)).encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
    """Check rows (ordered by seq) link up; return the first broken link or None."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for row in rows:
        if row["seq"] != expected_seq:
            return ChainBreak(expected_seq, f"event #{expected_seq} is missing (found #{row['seq']})")
        if row["prev_hash"] != expected_prev:
            return ChainBreak(row["seq"], "prev_hash does not match the previous event's hash")
        if event_hash(row["prev_hash"], row) != row["hash"]:
            return ChainBreak(row["seq"], "content does not match its hash (the event was altered)")
        expected_prev = row["hash"]
        expected_seq += 1
    return None
