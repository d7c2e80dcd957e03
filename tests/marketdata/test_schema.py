"""The bars table's physical design (see the comments on apps.marketdata.models.Bar)."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_bar_indexes_are_the_primary_key_and_a_brin_on_ts():
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'marketdata_bar' ORDER BY 1")
        indexes = dict(cur.fetchall())
        cur.execute("SELECT contype FROM pg_constraint WHERE conrelid = 'marketdata_bar'::regclass AND contype <> 'n' ORDER BY 1")
        constraint_types = [row[0] for row in cur.fetchall()]
    assert sorted(indexes) == ["marketdata_bar_pkey", "marketdata_bar_ts_brin"]
    assert indexes["marketdata_bar_pkey"].endswith("USING btree (instrument_id, timeframe, ts)")
    assert indexes["marketdata_bar_ts_brin"].endswith("USING brin (ts) WITH (autosummarize='on')")
    assert constraint_types == ["c", "p"]  # the OHLCV check and the primary key; no FK trigger on the hot path
