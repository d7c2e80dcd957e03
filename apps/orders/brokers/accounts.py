"""Which Alpaca account a live portfolio trades through (keys decrypted only here, only when used)."""

from __future__ import annotations

from apps.core.crypto import decrypt
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import BrokerRejected

NOT_CONFIGURED = "BROKER_NOT_CONFIGURED"


def alpaca_broker_for(portfolio):
    """An ``AlpacaBroker`` for the portfolio's stored keys. A live portfolio without keys refuses orders
    definitively (``BrokerRejected``): resending cannot help until an admin connects an account."""
    from apps.orders.brokers.alpaca import AlpacaBroker
    from apps.orders.models import AlpacaAccount

    with firm_scope(portfolio.firm_id):
        account = AlpacaAccount.objects.filter(portfolio_id=portfolio.pk).first()
    if account is None:
        raise BrokerRejected(f"No Alpaca account is connected to portfolio {portfolio.name!r}.", code=NOT_CONFIGURED)
    return AlpacaBroker(api_key=account.key_id, secret_key=decrypt(account.secret_encrypted), paper=account.paper)
