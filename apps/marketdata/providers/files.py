"""CSV/Parquet files behind the provider interface: one file per symbol, validated like an import.

``FilesProvider({"AAPL": "aapl.csv"})`` or ``FilesProvider(directory=..., pattern="{symbol}.csv")``
(a "/" in a crypto symbol becomes "-" in the file name). The file is read, its columns mapped and
every row validated (apps.marketdata.validation); a file with a rejected row is a ProviderError
naming it (a provider returns clean data or none), then the rows in ``[start, end)`` are returned.
Files have no live stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import pandas as pd

from apps.marketdata import validation
from apps.marketdata.providers.base import OnBar, OnQuote, ProviderError, check_request, validated_frame


class FilesProvider:
    name = "files"

    def __init__(self, paths: Mapping[str, str | Path] | None = None, *, directory: str | Path | None = None,
                 pattern: str = "{symbol}.csv", tz: str = "UTC", column_map: dict[str, str] | None = None):
        self.paths = {k.upper(): Path(v) for k, v in (paths or {}).items()}
        self.directory = Path(directory) if directory is not None else None
        self.pattern = pattern
        self.tz = tz
        self.column_map = column_map

    def path(self, symbol: str) -> Path:
        if symbol.upper() in self.paths:
            return self.paths[symbol.upper()]
        if self.directory is not None:
            return self.directory / self.pattern.format(symbol=symbol.upper().replace("/", "-"))
        raise ProviderError(f"no file configured for {symbol}")

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        check_request(timeframe, start, end)
        path = self.path(symbol)
        try:
            frame = validation.map_columns(validation.read_bars_file(path), self.column_map)
        except (validation.FileError, OSError) as exc:
            raise ProviderError(f"{path.name}: {exc}") from None
        return validated_frame(frame, symbol=symbol, timeframe=timeframe, tz=self.tz, exchange=None,
                               start=start, end=end, source=f"The file {path.name}", sort=False)

    def stream(self, symbols: Iterable[str], on_quote: OnQuote, on_bar: OnBar) -> None:
        raise ProviderError("the files provider has no live stream")

    def stop(self) -> None:
        return None
