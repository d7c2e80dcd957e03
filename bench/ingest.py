"""Bulk ingest of 1-minute bars: the project's import path against raw binary COPY and bulk_create.

Same N rows (BENCH_INGEST_ROWS, default 200,000 consecutive 1-minute crypto bars, a seeded random
walk) in the same run, each method into its own fresh instrument of the real ``marketdata_bar``
table (composite primary key, BRIN on ts, OHLC check constraint). import_csv, import_frame and
raw_copy run BENCH_INGEST_REPEATS times (default 3) interleaved, and the median run is reported;
the run checks that the import path and bulk_create stored identical values.

- import_csv: ``bars_import_file`` on a CSV file = pandas read + validation + binary COPY to a
  staging table + ``INSERT ... ON CONFLICT DO UPDATE`` (the ``manage.py import_bars`` path).
- import_parquet: the same from a Parquet file (pyarrow).
- import_frame: validation + COPY/upsert from an in-memory DataFrame (no file parsing).
- reimport_csv: the CSV again into the now-full series (every row a conflict, nothing changes).
- raw_copy: the floor. ``COPY marketdata_bar FROM STDIN (FORMAT BINARY)`` of a buffer already in
  binary COPY format, sent with psycopg 3's ``copy.write(buffer)``: no validation, no encoding, no
  conflict handling. The buffer is PostgreSQL's own binary encoding of the same rows (``COPY
  (SELECT ...) TO STDOUT (FORMAT BINARY)`` of the rows import_frame wrote, retargeted to the raw
  instrument), so it does not depend on the project's encoder; producing it is not timed.
- bulk_create: ``Bar.objects.bulk_create(batch_size=5000)`` of ready-made model instances
  (building them is not timed).
"""

from __future__ import annotations

import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = int(os.environ.get("BENCH_INGEST_ROWS", "200000"))
# The machine is shared: the three methods compared head to head run REPEATS times, interleaved,
# each into a fresh series, and the median is reported (every run is kept in the JSON).
REPEATS = int(os.environ.get("BENCH_INGEST_REPEATS", "3"))
REPEATED = ("import_csv", "import_frame", "raw_copy")
SINGLE = {"import_parquet": "BENCHPQ", "bulk_create": "BENCHORM"}
COLUMNS = ("instrument_id", "timeframe", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def _symbols() -> dict[str, str]:
    names = {f"{name}#{r}": f"BENCH{name.upper().replace('_', '')}{r}" for name in REPEATED for r in range(REPEATS)}
    return names | SINGLE


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(20240705)
    close = np.round(60000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
    open_ = np.round(np.concatenate(([60000.0], close[:-1])), 2)
    spread = np.round(np.abs(rng.normal(0, 15, n)), 2)
    return pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": np.round(rng.gamma(2.0, 1.5, n), 8), "vwap": np.round((open_ + close) / 2, 2),
        "trade_count": rng.integers(1, 500, n),
    })


def _instruments() -> dict:
    from apps.marketdata.models import Instrument

    _cleanup()
    return {name: Instrument.objects.create(symbol=symbol, asset_class="crypto", exchange="CRYPTO",
                                            name=f"bench {name}") for name, symbol in _symbols().items()}


def _cleanup() -> None:
    from apps.marketdata.models import Bar, Instrument

    Bar.objects.filter(instrument__symbol__in=_symbols().values()).delete()
    Instrument.objects.filter(symbol__in=_symbols().values()).delete()


def _count(instrument) -> int:
    from apps.marketdata.models import Bar

    return Bar.objects.filter(instrument=instrument).count()


def _rate(rows: int, seconds: float) -> dict:
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def _import_file(path: Path, symbol: str) -> tuple[float, object]:
    from apps.marketdata.services import bars_import_file

    started = time.perf_counter()
    outcome = bars_import_file(path=path, symbol=symbol, timeframe="1m", outlier_k=12.0)
    return time.perf_counter() - started, outcome


def _tuples(frame: pd.DataFrame, instrument_id: int) -> list[tuple]:
    def dec(col: str) -> list[Decimal]:
        return [Decimal(repr(x)) for x in frame[col].to_numpy().tolist()]

    ts = frame["ts"].dt.to_pydatetime().tolist() if hasattr(frame["ts"].dt, "to_pydatetime") else list(frame["ts"])
    cols = [dec(c) for c in ("open", "high", "low", "close", "volume", "vwap")]
    counts = frame["trade_count"].to_numpy().tolist()
    return [(instrument_id, "1m", t, o, h, lo, c, v, w, k)
            for t, o, h, lo, c, v, w, k in zip(ts, *cols, counts, strict=True)]


def _binary_buffer(source_id: int, target_id: int) -> bytes:
    """PostgreSQL's own binary COPY encoding of the rows of ``source_id``, as rows of ``target_id``."""
    from django.db import connection

    out = bytearray()
    with connection.cursor() as django_cursor:
        cur = django_cursor.cursor
        select = ", ".join([f"{int(target_id)}::int8", *COLUMNS[1:]])
        with cur.copy(f"COPY (SELECT {select} FROM marketdata_bar WHERE instrument_id = {int(source_id)} "
                      "ORDER BY timeframe, ts) TO STDOUT (FORMAT BINARY)") as copy:
            for block in copy:
                out += block
    return bytes(out)


def _raw_copy(buffer: bytes) -> float:
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as django_cursor:
        cur = django_cursor.cursor
        with cur.copy(f"COPY marketdata_bar ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(buffer)
    return time.perf_counter() - started


def _bulk_create(rows: list[tuple]) -> float:
    from django.db import transaction

    from apps.marketdata.models import Bar

    objs = [Bar(**dict(zip(COLUMNS, row, strict=True))) for row in rows]
    started = time.perf_counter()
    with transaction.atomic():
        Bar.objects.bulk_create(objs, batch_size=5000)
    return time.perf_counter() - started


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["rows_per_s"])
    return ordered[len(ordered) // 2] | {"runs_rows_per_s": [r["rows_per_s"] for r in runs]}


def main() -> dict:
    _setup()
    from apps.marketdata.ingest import bars_upsert
    from apps.marketdata.validation import validate_bars

    frame = _frame(ROWS)
    instruments = _instruments()
    results: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {name: [] for name in REPEATED}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            csv_path, pq_path = Path(tmp) / "bars.csv", Path(tmp) / "bars.parquet"
            frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv_path, index=False)
            frame.to_parquet(pq_path)
            for r in range(REPEATS):
                seconds, outcome = _import_file(csv_path, instruments[f"import_csv#{r}"].symbol)
                assert outcome.ok and outcome.written.inserted == ROWS, outcome.report.errors[:5]
                runs["import_csv"].append(_rate(ROWS, seconds) | {"warnings": len(outcome.report.warnings)})

                started = time.perf_counter()
                report = validate_bars(frame, timeframe="1m", exchange="CRYPTO")
                validated = time.perf_counter()
                written = bars_upsert(instrument_id=instruments[f"import_frame#{r}"].pk, timeframe="1m",
                                      bars=report.bars)
                done = time.perf_counter()
                assert written.inserted == ROWS
                runs["import_frame"].append(_rate(ROWS, done - started) | {
                    "validate_seconds": round(validated - started, 3),
                    "copy_upsert_seconds": round(done - validated, 3)})

                buffer = _binary_buffer(instruments["import_frame#0"].pk, instruments[f"raw_copy#{r}"].pk)
                runs["raw_copy"].append(_rate(ROWS, _raw_copy(buffer)) | {"buffer_bytes": len(buffer)})
            results.update({name: _median_run(runs[name]) for name in REPEATED})

            seconds, outcome = _import_file(csv_path, instruments["import_csv#0"].symbol)
            assert outcome.written.unchanged == ROWS
            results["reimport_csv"] = _rate(ROWS, seconds) | {"unchanged": outcome.written.unchanged}

            seconds, outcome = _import_file(pq_path, instruments["import_parquet"].symbol)
            assert outcome.written.inserted == ROWS
            results["import_parquet"] = _rate(ROWS, seconds)

        rows = _tuples(frame, instruments["bulk_create"].pk)
        results["bulk_create"] = _rate(ROWS, _bulk_create(rows))

        counts = {name: _count(inst) for name, inst in instruments.items()}
        assert set(counts.values()) == {ROWS}, counts
        # Every method stored exactly the same values (the raw COPY copies import_frame's rows).
        same = _same_rows(instruments["import_csv#0"].pk, instruments["import_frame#0"].pk,
                          instruments["bulk_create"].pk)
        assert same, "the import path and bulk_create stored different values"
    finally:
        _cleanup()

    raw, orm = results["raw_copy"]["rows_per_s"], results["bulk_create"]["rows_per_s"]
    ratios = {name: {"vs_raw_copy": round(r["rows_per_s"] / raw, 2), "vs_bulk_create": round(r["rows_per_s"] / orm, 1)}
              for name, r in results.items()}
    load = os.getloadavg()
    summary = (
        f"ingest ({ROWS:,} 1m bars, median of {REPEATS}): import CSV {results['import_csv']['rows_per_s']:,} rows/s "
        f"({ratios['import_csv']['vs_raw_copy']}x raw COPY, {ratios['import_csv']['vs_bulk_create']}x bulk_create); "
        f"from DataFrame {results['import_frame']['rows_per_s']:,} rows/s "
        f"({ratios['import_frame']['vs_raw_copy']}x raw, {ratios['import_frame']['vs_bulk_create']}x ORM); "
        f"parquet {results['import_parquet']['rows_per_s']:,}; re-import {results['reimport_csv']['rows_per_s']:,}; "
        f"raw binary COPY (pre-encoded buffer) {raw:,} rows/s; bulk_create {orm:,} rows/s; "
        f"load average {load[0]:.2f} on {len(os.sched_getaffinity(0))} CPUs"
    )
    return {"summary": summary, "rows": ROWS, "repeats": REPEATS, "results": results, "ratios": ratios,
            "loadavg_1_5_15_at_end": [round(x, 2) for x in load],
            "aims": {"import_vs_raw_copy": ">= 0.5", "import_vs_bulk_create": ">= 10"}}


def _same_rows(*instrument_ids: int) -> bool:
    from django.db import connection

    with connection.cursor() as cur:
        digests = []
        for pk in instrument_ids:
            cur.execute("SELECT md5(string_agg(concat_ws(',', ts, open, high, low, close, volume, vwap, trade_count),"
                        " ';' ORDER BY ts)) FROM marketdata_bar WHERE instrument_id = %s", [pk])
            digests.append(cur.fetchone()[0])
    return len(set(digests)) == 1


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
