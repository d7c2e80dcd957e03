"""bench/orders.py's world: the bench-only database, the servers' environment, firms with traders, tokens
and funded paper portfolios, crypto instruments and their quotes. Runs inside the driver process
(bench/_orders_driver.py), whose Django uses bench._orders_settings against the bench database."""

from __future__ import annotations

import os
import secrets
import time
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

BENCH_DB = "octopus_bench_orders"
# crypto trades around the clock: no session dependence; tick 0.01, lot 0.0001 like the tests' BTC/USD
SYMBOLS = {"BTC/USD": 60000.0, "ETH/USD": 3000.0, "SOL/USD": 150.0, "LTC/USD": 80.0}
DEPOSIT = Decimal("1000000000")  # buying power never rejects: an order is at most a few hundred dollars


def bench_database_url(base: str) -> str:
    """The same server as ``base``, the bench-only database: never the dev or the test database."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + BENCH_DB))


def ensure_database(url: str) -> bool:
    """CREATE DATABASE the bench database when missing (through the server's ``postgres`` database)."""
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        return True


def server_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of every bench process (driver, gunicorn, celery): production settings (DEBUG=0)."""
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="bench._orders_settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        OCTOPUS_FIELD_KEYS="5hWkFqC0sZ0zq1b0M3mB0VQk7b8mY6yHn2cJ9pX4tLw=",  # any well-formed Fernet key
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # production's per-principal limit (1200/min = 20/s) would answer most of 100 orders/s with 429;
        # the counter is still kept (the throttle's Redis round trip stays in the measured path)
        API_RATE="100000000/min",
        OCTOPUS_EMBEDDED_AUTOSTART="0",
    )
    for name in ("OCTOPUS_TESTING", "PYTEST_XDIST_WORKER", "TEST_DATABASE_NAME"):
        env.pop(name, None)
    return env


def instruments() -> dict:
    from apps.marketdata.models import Instrument

    made = {}
    for symbol in SYMBOLS:
        made[symbol], _ = Instrument.objects.get_or_create(
            symbol=symbol, asset_class="crypto",
            defaults={"exchange": "CRYPTO", "name": f"orders bench {symbol}", "fractionable": True,
                      "lot_size": Decimal("0.0001"), "tick_size": Decimal("0.01")})
    return made


def quotes_fresh() -> None:
    """A fresh quote per symbol (the quote ages out after 90 s; the driver refreshes it every phase)."""
    from apps.marketdata.quotes import QuoteIn, quotes_set

    now = time.time()
    quotes_set([QuoteIn(symbol=s, exchange="CRYPTO", bid=p - 0.5, ask=p + 0.5, last=p, bid_size=1000,
                        ask_size=1000, ts=now) for s, p in SYMBOLS.items()])


def firm_world(run: str, index: int, portfolios: int = 1) -> dict:
    """A firm with one trader, a 'read'+'trade' token and ``portfolios`` funded paper portfolios."""
    from apps.accounts.models import Firm, Membership, Role, User
    from apps.accounts.services.tokens import token_create
    from apps.audit.services import Actor
    from apps.portfolios import services

    firm = Firm.objects.create(name=f"Orders bench {run} {index}", slug=f"bench-orders-{run}-{index}")
    user = User.objects.create(email=f"bench-orders-{run}-{index}@example.invalid", full_name="Orders bench")
    membership = Membership.objects.create(user=user, firm=firm, role=Role.TRADER)
    actor = Actor.system("bench orders")
    made = []
    for p in range(portfolios):
        portfolio = services.portfolio_create(firm_id=firm.pk, name=f"bench {p}", actor=actor)
        services.cash_post(portfolio=portfolio, kind="deposit", amount=DEPOSIT, actor=actor)
        made.append(portfolio.pk)
    token = token_create(membership=membership, name="bench orders", scopes=["read", "trade"], expires_days=1,
                         actor=Actor.for_user(user)).secret
    return {"firm_id": firm.pk, "slug": firm.slug, "token": token, "portfolios": made}
