"""The compliance export format: every field of every event, byte-for-byte reproducible.

Rows are in chain order (seq). Values are rendered exactly as they are hashed (``audit_row``),
so the file can be re-verified offline with ``apps.audit.chain.verify_chain``. JSON values
(before/after) are canonical: sorted keys, no spaces. CSV uses ``\\r\\n`` line ends (RFC 4180);
JSONL one compact object per line with sorted keys.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from apps.audit.models import AuditEvent
from apps.audit.services import audit_row

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}

# id first, then the hashed row in a fixed order (firm_id … request_id, prev_hash, hash).
EXPORT_FIELDS = (
    "id",
    "firm_id",
    "seq",
    "created_at",
    "actor_type",
    "actor_user_id",
    "actor_token_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "before",
    "after",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class ExportFile:
    content: bytes
    rows: int
    sha256: str
    content_type: str

    def manifest(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256, "bytes": len(self.content)}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def export_row(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.pk, **audit_row(event)}


def render_export(events: Iterable[AuditEvent], fmt: str) -> ExportFile:
    """Render events (already in seq order) as CSV or JSONL bytes, with their count and SHA-256."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    buffer = io.StringIO(newline="")
    rows = 0
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(EXPORT_FIELDS)
        for event in events:
            row = export_row(event)
            writer.writerow(
                [
                    "" if row[name] is None else (_canonical(row[name]) if name in ("before", "after") else row[name])
                    for name in EXPORT_FIELDS
                ]
            )
            rows += 1
    else:
        for event in events:
            row = export_row(event)
            buffer.write(_canonical({name: row[name] for name in EXPORT_FIELDS}))
            buffer.write("\n")
            rows += 1
    content = buffer.getvalue().encode("utf-8")
    return ExportFile(content=content, rows=rows, sha256=hashlib.sha256(content).hexdigest(), content_type=FORMATS[fmt])
