"""``manage.py import_bars FILE --symbol AAPL --timeframe 1m [...]``: validate and load a CSV/Parquet file.

Exit status: 0 when rows were written; 1 (CommandError) when the request is wrong (unknown symbol,
bad option, unreadable file) or the file has rejected rows and --skip-bad-rows was not given, in
which case nothing is written and every rejected row is listed with its reason.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import DomainError
from apps.marketdata.models import AssetClass, Timeframe
from apps.marketdata.services import bars_import_file
from apps.marketdata.validation import DEFAULT_OUTLIER_K, format_report

PROGRESS_MIN_ROWS = 100_000
WARNINGS_SHOWN = 50


class Command(BaseCommand):
    help = "Import OHLCV bars from a CSV or Parquet file (validated; all or nothing unless --skip-bad-rows)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", required=True, help=f"one of {', '.join(Timeframe.values)}")
        parser.add_argument("--asset-class", help=f"one of {', '.join(AssetClass.values)}")
        parser.add_argument("--create-instrument", action="store_true", help="create the instrument if unknown")
        parser.add_argument("--exchange", help="exchange of a created instrument (NYSE, NASDAQ, ARCA, CRYPTO)")
        parser.add_argument("--tz", default="UTC", help="time zone of naive timestamps (default UTC)")
        parser.add_argument("--map", dest="column_map", help="column mapping, e.g. ts=Date,open=Open,volume=Vol")
        parser.add_argument("--format", dest="fmt", choices=["csv", "parquet"], help="default: from the extension")
        parser.add_argument("--skip-bad-rows", action="store_true", help="import the good rows, report the rest")
        parser.add_argument("--outlier-k", type=float, default=DEFAULT_OUTLIER_K,
                            help="warn on returns beyond K robust sigmas (0 disables)")

    def handle(self, *args, **opts) -> None:
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if total >= PROGRESS_MIN_ROWS:
                self.stderr.write(f"written {done}/{total} rows ({done / total:.0%})")

        try:
            outcome = bars_import_file(
                path=opts["file"], symbol=opts["symbol"], timeframe=opts["timeframe"],
                asset_class=opts["asset_class"], create_instrument=opts["create_instrument"],
                exchange=opts["exchange"], tz=opts["tz"], column_map=opts["column_map"],
                skip_bad_rows=opts["skip_bad_rows"], fmt=opts["fmt"], outlier_k=opts["outlier_k"],
                progress=progress,
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

        report = outcome.report
        lines = list(format_report(report))
        warnings = [line for line in lines if line.startswith("warning: ")]
        errors = [line for line in lines if line.startswith("error: ")]
        for line in errors:  # every rejected row, always
            self.stdout.write(line)
        for line in warnings[:WARNINGS_SHOWN]:
            self.stdout.write(line)
        if len(warnings) > WARNINGS_SHOWN:
            self.stdout.write(f"... and {len(warnings) - WARNINGS_SHOWN} more warnings")
        if not outcome.ok:
            raise CommandError(
                f"{outcome.symbol}: file rejected, nothing written: {report.rejected} of {report.rows} rows rejected "
                f"(use --skip-bad-rows to import the {report.accepted} good rows)"
            )
        written = outcome.written
        created = " (instrument created)" if outcome.instrument_created else ""
        self.stdout.write(
            f"{outcome.symbol} {opts['timeframe']}{created}: rows {report.rows}, accepted {report.accepted}, "
            f"rejected {report.rejected}, warnings {len(report.warnings)}; inserted {written.inserted}, "
            f"updated {written.updated}, unchanged {written.unchanged} in {time.monotonic() - started:.2f} s"
        )
