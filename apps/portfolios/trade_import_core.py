"""Trade import, the pure part: read a broker's CSV, guess the column mapping, parse and check rows.

No ORM here: the services in ``apps.portfolios.trade_import`` add what needs the database (symbols,
fill ids already booked) and book the rows. Row numbers are the file's line numbers (the header is
line 1 in a plain export), so a user can find a reported row in a spreadsheet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
DATE_ONLY_TIME = time(16, 0)  # a date without a time is taken as the regular close in New York

# our fields, in the order the mapping form shows them
FIELDS = ("executed_at", "date", "symbol", "side", "quantity", "price", "commission", "fees", "fill_id", "type", "amount",
          "asset_class", "memo")
REQUIRED = ("executed_at",)
TRADE, DEPOSIT, WITHDRAWAL, DIVIDEND, FEE, INTEREST = "trade", "deposit", "withdrawal", "dividend", "fee", "interest"
KINDS = (TRADE, DEPOSIT, WITHDRAWAL, DIVIDEND, FEE, INTEREST)
CASH_KINDS = (DEPOSIT, WITHDRAWAL, DIVIDEND, FEE, INTEREST)
TRANSFER = "transfer"  # a deposit or a withdrawal, by the sign of the amount
ASSET_CLASSES = {"equity": "equity", "stock": "equity", "stk": "equity", "stocks": "equity", "etf": "etf",
                 "crypto": "crypto", "cryptocurrency": "crypto", "option": "option", "opt": "option",
                 "options": "option", "us_equity": "equity"}
MAX_ISSUES = 5_000
MAX_NUMBER = Decimal(10) ** 15  # the ledger's arithmetic stays exact well inside 28 significant digits
MAX_PLACES = 10
EARLIEST_YEAR = 1900  # older is a typo (and near year 1 a time zone can leave the calendar)

# messages (tests assert them exactly)
MSG_NO_HEADER = "no header row found: the file needs a row of column names"
MSG_NO_ROWS = "the file has no data rows"
MSG_NOT_TEXT = "the file is not a text CSV"
MSG_REQUIRED = "required"
MSG_BAD_DATE = "not a date or date-time: {value!r}"
MSG_FUTURE = "in the future ({value})"
MSG_TOO_OLD = "before 1900: {value!r}"
MSG_OUT_OF_RANGE = "out of range: {value!r} (below 10^15, at most 10 decimal places)"
MSG_BAD_NUMBER = "not a number: {value!r}"
MSG_NEGATIVE_PRICE = "negative price {value}"
MSG_ZERO_QUANTITY = "zero quantity"
MSG_BAD_SIDE = "not a side: {value!r} (buy, sell, Bought, Sold, Buy to Open, Sell to Close...)"
MSG_NEGATIVE_BUY = "a buy with a negative quantity {value}"
MSG_NO_SIDE = "no side: map a side column or give sells a negative quantity"
MSG_BAD_TYPE = "not a row type: {value!r} (trade, deposit, withdrawal, dividend, fee, interest)"
MSG_NO_AMOUNT = "required for a {kind} row"
MSG_ZERO_AMOUNT = "zero amount"
MSG_DUPLICATE_IN_FILE = "fill id {fill_id!r} also on row {row}"
MSG_BAD_ASSET_CLASS = "not an asset class: {value!r} (equity, etf, crypto, option)"
MSG_TOO_LONG = "longer than {n} characters"
MSG_MAPPING_UNKNOWN_FIELD = "not a field we import"
MSG_MAPPING_NO_COLUMN = "no column {column!r} in the file"


class ImportFileError(ValueError):
    """The file as a whole cannot be read (the services turn it into a DomainError on ``file``)."""


@dataclass(frozen=True)
class Issue:
    row: int
    field: str
    message: str
    code: str = "INVALID_VALUE"

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (line number, cells)
    header_line: int = 1


@dataclass(frozen=True)
class Row:
    """One parsed row, ready to be checked against the database and booked."""

    row: int
    kind: str
    executed_at: datetime
    fill_id: str
    symbol: str = ""
    side: str = ""
    quantity: Decimal | None = None
    price: Decimal | None = None
    fees: Decimal = Decimal(0)
    amount: Decimal | None = None
    asset_class: str = ""
    memo: str = ""


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total: int = 0


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def decode(content: bytes) -> str:
    if b"\x00" in content[:4096]:
        raise ImportFileError(MSG_NOT_TEXT)
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")  # Excel's "CSV" on Windows


def _delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _filled(cells: list[str]) -> int:
    return sum(1 for c in cells if c.strip())


_TOTAL = re.compile(r"\btotals?\b", re.IGNORECASE)  # "Transactions Total" (Schwab), "Total" rows


def read_table(content: bytes) -> Table:
    """The header and the data rows. Title lines above the header (Schwab), blank lines, lines with a
    single filled cell (titles, footnotes), total lines ("Transactions Total") and repeated headers (IB Flex
    sections) are not data rows."""
    text = decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    headers: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if headers is None:
                if _filled(cells) >= 3:
                    headers, header_line = [c.strip() for c in cells], start
                elif start > 30:
                    break
                continue
            if _filled(cells) <= 1 or _TOTAL.search(cells[0]):
                continue
            if [c.strip() for c in cells] == headers:
                continue
            rows.append((start, cells))
    except csv.Error as exc:
        raise ImportFileError(f"unreadable CSV near line {line}: {exc}") from None
    if headers is None:
        raise ImportFileError(MSG_NO_HEADER)
    if not rows:
        raise ImportFileError(MSG_NO_ROWS)
    return Table(headers=headers, rows=rows, header_line=header_line)


# --- the mapping ----------------------------------------------------------------------------------


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", header.lower())


# Known exports, recognised by a few columns only they have; their mapping is exact.
PROFILES: list[tuple[str, frozenset[str], dict[str, str]]] = [
    ("Alpaca activities", frozenset({"activitytype", "transactiontime"}), {
        "executed_at": "transaction_time", "symbol": "symbol", "side": "side", "quantity": "qty", "price": "price",
        "fill_id": "id", "type": "activity_type", "amount": "net_amount", "memo": "description", "date": "date"}),
    ("Interactive Brokers Flex trades", frozenset({"tradeprice", "ibcommission"}), {
        "executed_at": "DateTime", "symbol": "Symbol", "side": "Buy/Sell", "quantity": "Quantity",
        "price": "TradePrice", "commission": "IBCommission", "fill_id": "TradeID", "asset_class": "AssetClass",
        "memo": "Description"}),
    ("Fidelity history", frozenset({"rundate", "action"}), {
        "executed_at": "Run Date", "symbol": "Symbol", "side": "Action", "type": "Action", "quantity": "Quantity",
        "price": "Price ($)", "commission": "Commission ($)", "fees": "Fees ($)", "amount": "Amount ($)",
        "memo": "Description"}),
    ("Schwab transactions", frozenset({"action", "feescomm"}), {
        "executed_at": "Date", "symbol": "Symbol", "side": "Action", "type": "Action", "quantity": "Quantity",
        "price": "Price", "fees": "Fees & Comm", "amount": "Amount", "memo": "Description"}),
]

# Any other file: the first header matching one of these (normalised: lower case, letters and digits).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "executed_at": ("executedat", "datetime", "transactiontime", "executiontime", "tradetime", "filledat",
                    "timestamp", "time", "tradedate", "date", "rundate", "transactiondate"),
    "date": ("date", "tradedate"),
    "symbol": ("symbol", "ticker", "instrument", "underlyingsymbol", "security", "sym"),
    "side": ("side", "buysell", "action", "transactiontype", "direction"),
    "quantity": ("quantity", "qty", "shares", "filledqty", "units", "amountshares"),
    "price": ("price", "tradeprice", "fillprice", "executionprice", "avgprice", "filledavgprice", "price$"),
    "commission": ("commission", "commissions", "ibcommission", "commission$", "comm"),
    "fees": ("fees", "fee", "feescomm", "fees$", "regfees", "otherfees"),
    "fill_id": ("fillid", "executionid", "execid", "ibexecid", "tradeid", "transactionid", "id"),
    "type": ("type", "activitytype", "rowtype", "kind", "category"),
    "amount": ("amount", "netamount", "amount$", "cashamount", "proceeds", "value"),
    "asset_class": ("assetclass", "assettype", "securitytype", "instrumenttype"),
    "memo": ("memo", "description", "note", "notes"),
}


def guess_mapping(headers: list[str]) -> tuple[str, dict[str, str]]:
    """(the format recognised, our field -> the file's column). Only columns the file has."""
    by_norm: dict[str, str] = {}
    for h in headers:
        by_norm.setdefault(_norm(h), h)
    for name, signature, mapping in PROFILES:
        if signature <= set(by_norm):
            found = {ours: by_norm[_norm(col)] for ours, col in mapping.items() if _norm(col) in by_norm}
            return name, found
    used: set[str] = set()
    guessed: dict[str, str] = {}
    for ours in FIELDS:
        for candidate in SYNONYMS[ours]:
            header = by_norm.get(candidate)
            if header is not None and header not in used:
                guessed[ours] = header
                used.add(header)
                break
    return "generic", guessed


def check_mapping(mapping: dict, headers: list[str]) -> dict[str, list[str]]:
    """Problems with a mapping, keyed ``mapping.<field>``; empty when it is usable."""
    problems: dict[str, list[str]] = {}
    for ours, column in mapping.items():
        if ours not in FIELDS:
            problems[f"mapping.{ours}"] = [MSG_MAPPING_UNKNOWN_FIELD]
        elif not isinstance(column, str) or column not in headers:
            problems[f"mapping.{ours}"] = [MSG_MAPPING_NO_COLUMN.format(column=column)]
    for ours in REQUIRED:
        if not mapping.get(ours):
            problems[f"mapping.{ours}"] = [MSG_REQUIRED]
    return problems


# --- values ---------------------------------------------------------------------------------------

_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%Y%m%d", "%Y/%m/%d", "%d-%b-%Y", "%b %d, %Y")
_DATETIME_FORMATS = ("%Y%m%d;%H%M%S", "%Y%m%d %H%M%S", "%Y-%m-%d, %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
                     "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%Y-%m-%d %I:%M:%S %p")
_AS_OF = re.compile(r"\s+as of\s+.*$", re.IGNORECASE)  # Schwab: "01/05/2024 as of 01/04/2024"


def parse_when(text: str, *, now: datetime) -> datetime:
    """A date or date-time. Naive values are New York time; a date alone is 16:00 New York (the
    close) or now, whichever is earlier, so a fill of today is not in the future."""
    value = _AS_OF.sub("", text.strip())
    if not value:
        raise ValueError
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if len(value) <= 10:  # "2024-01-05": a date alone
            parsed = None
            day = date.fromisoformat(value)
    except ValueError:
        day = None
        for fmt in _DATETIME_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)  # noqa: DTZ007 - naive by design: New York, below
                break
            except ValueError:
                continue
        if parsed is None:
            for fmt in _DATE_FORMATS:
                try:
                    day = datetime.strptime(value, fmt).date()  # noqa: DTZ007 - only the date is kept
                    break
                except ValueError:
                    continue
        if parsed is None and day is None:
            raise ValueError from None
    if parsed is None:
        close = datetime.combine(day, DATE_ONLY_TIME, tzinfo=NEW_YORK)
        return min(close, now) if close.date() == now.astimezone(NEW_YORK).date() else close
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=NEW_YORK)
    return parsed


def parse_number(text: str) -> Decimal | None:
    """Broker number formats: "$1,234.50", "(12.34)" (negative), "-1,000", "+5". Blank is None."""
    value = text.strip().replace(",", "").replace("$", "").replace(" ", "")
    if not value or value in ("-", "--"):
        return None
    negative = value.startswith("(") and value.endswith(")")
    if negative:
        value = value[1:-1]
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError from None
    if not number.is_finite():
        raise ValueError
    return -number if negative else number


_BUY = ("buy", "bought", "bot", "b", "you bought", "reinvestment", "buy to open", "buy to close", "buy to cover",
        "cover", "long")
_SELL = ("sell", "sold", "sld", "s", "you sold", "sell to open", "sell to close", "sell short", "short sell",
         "short", "sell_short", "ss")
_KIND_WORDS: list[tuple[str, str]] = [  # first match wins (substring of the lower-cased value)
    ("dividend", DIVIDEND), ("div", DIVIDEND), ("interest", INTEREST), ("int", INTEREST),
    ("withdraw", WITHDRAWAL), ("csw", WITHDRAWAL), ("deposit", DEPOSIT), ("csd", DEPOSIT),
    ("transfer", TRANSFER), ("wire", TRANSFER), ("moneylink", TRANSFER), ("journal", TRANSFER), ("jnlc", TRANSFER),
    ("fee", FEE), ("fill", TRADE), ("trade", TRADE), ("bought", TRADE), ("sold", TRADE), ("buy", TRADE),
    ("sell", TRADE),
]


def parse_side(text: str) -> str | None:
    """buy or sell from a broker's word (None when it is not one)."""
    value = re.sub(r"[\s_]+", " ", text.strip().lower())
    if value in _BUY or value.startswith(("buy ", "bought ", "you bought ", "reinvest")):
        return "buy"
    if value in _SELL or value.startswith(("sell ", "sold ", "you sold ")):
        return "sell"
    return None


def parse_kind(text: str) -> str | None:
    """Our row type from a broker's word (Alpaca FILL/DIV/CSD/CSW, Schwab "Qualified Dividend"...)."""
    value = text.strip().lower()
    if not value:
        return TRADE
    if value in KINDS:
        return value
    if parse_side(value) is not None or value == "partial_fill":
        return TRADE
    for word, kind in _KIND_WORDS:
        if len(word) <= 3:
            if re.search(rf"\b{word}\b", value):
                return kind
        elif word in value:
            return kind
    return None


# --- rows -----------------------------------------------------------------------------------------


def import_fill_id(file_digest: str, row: int) -> str:
    return f"imp:{file_digest}:{row}"


def parse_rows(table: Table, mapping: dict[str, str], *, file_digest: str, now: datetime) -> Parsed:
    """Every row parsed, or an issue per bad field (all of them: the report lists every problem).
    Also refuses a fill id used twice in the file. The database checks come later."""
    index = {ours: table.headers.index(col) for ours, col in mapping.items() if col in table.headers}
    out = Parsed(total=len(table.rows))
    seen: dict[str, int] = {}
    for line, cells in table.rows:
        row, issues = _parse_row(line, cells, index, file_digest, now)
        if row is not None:
            first = seen.setdefault(row.fill_id, line)
            if first != line:
                issues.append(Issue(line, "fill_id", MSG_DUPLICATE_IN_FILE.format(fill_id=row.fill_id, row=first),
                                    "DUPLICATE_FILL"))
        out.issues.extend(issues)
        if row is not None and not issues:
            out.rows.append(row)
    return out


def _parse_row(line: int, cells: list[str], index: dict[str, int], file_digest: str,
               now: datetime) -> tuple[Row | None, list[Issue]]:
    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    issues: list[Issue] = []

    def number(name: str) -> Decimal | None:
        text = cell(name)
        try:
            value = parse_number(text)
        except ValueError:
            issues.append(Issue(line, name, MSG_BAD_NUMBER.format(value=text)))
            return None
        if value is not None and (abs(value) >= MAX_NUMBER or value.as_tuple().exponent < -MAX_PLACES):
            issues.append(Issue(line, name, MSG_OUT_OF_RANGE.format(value=text)))
            return None
        return value

    when_text = cell("executed_at") or cell("date")  # Alpaca: trades have a time, other activities a date
    when = None
    if not when_text:
        issues.append(Issue(line, "executed_at", MSG_REQUIRED, "REQUIRED"))
    else:
        try:
            when = parse_when(when_text, now=now)
        except ValueError:
            issues.append(Issue(line, "executed_at", MSG_BAD_DATE.format(value=when_text)))
        if when is not None and when > now:
            issues.append(Issue(line, "executed_at", MSG_FUTURE.format(value=when.isoformat()), "FUTURE_DATE"))
        elif when is not None and when.year < EARLIEST_YEAR:
            issues.append(Issue(line, "executed_at", MSG_TOO_OLD.format(value=when_text)))

    type_text = cell("type")
    kind = parse_kind(type_text)
    if kind is None:
        issues.append(Issue(line, "type", MSG_BAD_TYPE.format(value=type_text)))
    amount = number("amount")
    if kind == TRANSFER:
        kind = DEPOSIT if amount is not None and amount > 0 else WITHDRAWAL
    fill_id = cell("fill_id") or import_fill_id(file_digest, line)
    if len(fill_id) > 128:
        issues.append(Issue(line, "fill_id", MSG_TOO_LONG.format(n=128)))
    symbol = cell("symbol").upper()
    if len(symbol) > 32:
        issues.append(Issue(line, "symbol", MSG_TOO_LONG.format(n=32)))
    asset_text = cell("asset_class")
    asset_class = ASSET_CLASSES.get(asset_text.lower(), None) if asset_text else ""
    if asset_class is None:
        issues.append(Issue(line, "asset_class", MSG_BAD_ASSET_CLASS.format(value=asset_text)))
    memo = cell("memo")[:300]
    base = {"row": line, "executed_at": when, "fill_id": fill_id, "symbol": symbol, "asset_class": asset_class or "",
            "memo": memo}

    if kind in CASH_KINDS:
        if amount is None:
            if not any(i.field == "amount" for i in issues):
                issues.append(Issue(line, "amount", MSG_NO_AMOUNT.format(kind=kind), "REQUIRED"))
        elif amount == 0:
            issues.append(Issue(line, "amount", MSG_ZERO_AMOUNT))
        elif kind != INTEREST:
            amount = abs(amount)  # the type says the direction; exports sign withdrawals and fees either way
        if issues:
            return None, issues
        return Row(kind=kind, amount=amount, **base), issues

    # a trade
    if not symbol:
        issues.append(Issue(line, "symbol", MSG_REQUIRED, "REQUIRED"))
    quantity = number("quantity")
    price = number("price")
    commission = number("commission")
    fees = number("fees")
    side_text = cell("side")
    side = parse_side(side_text) if side_text else None
    if side_text and side is None:
        issues.append(Issue(line, "side", MSG_BAD_SIDE.format(value=side_text)))
    if quantity is None:
        if not any(i.field == "quantity" for i in issues):
            issues.append(Issue(line, "quantity", MSG_REQUIRED, "REQUIRED"))
    elif quantity == 0:
        issues.append(Issue(line, "quantity", MSG_ZERO_QUANTITY))
    elif quantity < 0:
        if side == "buy":
            issues.append(Issue(line, "quantity", MSG_NEGATIVE_BUY.format(value=quantity)))
        side = "sell"  # a negative quantity is a sale (IB, Fidelity sign their sells)
        quantity = -quantity
    elif side is None and not side_text:
        issues.append(Issue(line, "side", MSG_NO_SIDE, "REQUIRED"))
    if price is None:
        if not any(i.field == "price" for i in issues):
            issues.append(Issue(line, "price", MSG_REQUIRED, "REQUIRED"))
    elif price < 0:
        issues.append(Issue(line, "price", MSG_NEGATIVE_PRICE.format(value=price)))
    total_fees = abs(commission or 0) + abs(fees or 0)  # exports show costs as negative cash
    if issues:
        return None, issues
    return Row(kind=TRADE, side=side, quantity=quantity, price=price, fees=Decimal(total_fees), **base), issues


def chronological(rows: list[Row]) -> list[Row]:
    """Booking order: by time, ties in file order (sorted() is stable)."""
    return sorted(rows, key=lambda r: r.executed_at)


def preview_rows(table: Table, n: int = 5) -> list[dict]:
    return [{"row": line, "values": dict(zip(table.headers, cells, strict=False))} for line, cells in table.rows[:n]]
