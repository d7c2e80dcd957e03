"""The order stream at /ws/orders/: the firm's order events and fills, live.

It authenticates like /ws/events/ (apps.core.consumers; the first message is ``hello``) and forwards only
the firm stream's ``order`` events: ``{"type": "event", "kind": "order", "seq", "event_id", "at",
"payload": {"event", "order": {...}, "execution"?}}``, published after each order change commits
(apps.orders.updates.publish_order). ``seq`` is the firm stream's, so numbers of other kinds are skipped
here; a client that reconnects resyncs from ``GET /api/v1/orders/``.

Client messages: ``{"type": "subscribe", "portfolio": <id>}`` narrows the socket to one portfolio the
member may view (``subscribed``); another firm's, a restricted one without a grant, or an unknown id is the
same error ``NOT_FOUND``. ``{"type": "subscribe", "portfolio": null}`` widens it back to every portfolio.
An order of a restricted portfolio reaches only members who see it (owners and admins).
"""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async

from apps.core.consumers import EventsConsumer

log = logging.getLogger(__name__)


def _portfolio_visible(membership_id: int, portfolio_id: int) -> bool:
    from django.http import Http404

    from apps.accounts.models import Membership
    from apps.portfolios.selectors import VIEW, portfolio_for

    membership = Membership.objects.select_related("user").get(pk=membership_id)
    try:
        portfolio_for(membership, portfolio_id, VIEW)
    except Http404:
        return False
    return True


class OrdersConsumer(EventsConsumer):
    log_name = "ws/orders"
    portfolio_id: int | None = None

    async def on_message(self, kind, content: dict) -> None:
        if kind == "subscribe" and "portfolio" in content:
            await self._subscribe_portfolio(content["portfolio"])
        else:
            await super().on_message(kind, content)

    async def _subscribe_portfolio(self, portfolio) -> None:
        if portfolio is None:
            self.portfolio_id = None
        elif isinstance(portfolio, bool) or not isinstance(portfolio, int):
            await self._error("INVALID_PORTFOLIO", "portfolio must be an integer id or null.", field="portfolio")
            return
        elif not await database_sync_to_async(_portfolio_visible)(self.principal.membership_id, portfolio):
            await self._error("NOT_FOUND", "No such portfolio.", field="portfolio")
            return
        else:
            self.portfolio_id = portfolio
        await self.send_json({"type": "subscribed", "firm": self.firm_id, "stream": "orders",
                              "portfolio": self.portfolio_id})

    async def firm_event(self, message):
        if message.get("kind") != "order":
            return
        if self.portfolio_id is not None and message.get("firm") == self.firm_id:
            try:
                portfolio = json.loads(message["text"])["payload"]["order"]["portfolio"]
            except (KeyError, TypeError, ValueError):
                return
            if portfolio != self.portfolio_id:
                return
        await super().firm_event(message)
