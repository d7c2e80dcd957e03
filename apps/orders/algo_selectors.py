"""Reads for execution algorithms: the scoped lookup, the list with progress in one query, the children."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Length
from django.http import Http404

from apps.core.models import ExactDecimalField
from apps.orders.algos import schedule_load
from apps.orders.core import CANCELABLE, Status
from apps.orders.models import AlgoOrder, AlgoStatus, Order

if TYPE_CHECKING:
    from apps.portfolios.models import Portfolio

ZERO = Decimal(0)
REFUSED = [Status.RISK_REJECTED.value, Status.REJECTED.value]


def with_progress(qs: QuerySet[AlgoOrder]) -> QuerySet[AlgoOrder]:
    """Annotate each algo with its children's totals (one aggregate join, no N+1)."""
    return qs.annotate(
        children_filled=Coalesce(Sum("children__filled_qty"), Value(ZERO), output_field=ExactDecimalField()),
        children_refused=Count("children", filter=Q(children__status__in=REFUSED)),
        children_open=Count("children", filter=Q(children__status__in=[s.value for s in CANCELABLE])),
    )


def algo_list(*, firm_id: int, portfolio_ids) -> QuerySet[AlgoOrder]:
    """The firm's algos in the given portfolios (a queryset of ids), newest first, with progress."""
    qs = AlgoOrder.objects.for_firm(firm_id).filter(portfolio_id__in=portfolio_ids)
    return with_progress(qs).order_by("-created_at", "id")


def algo_for(*, firm_id: int, pk, portfolio_ids=None) -> AlgoOrder:
    """One algo of the firm (and, given ``portfolio_ids``, in one of those portfolios) with progress; 404 for
    a missing id, a malformed one and another firm's alike."""
    qs = AlgoOrder.objects.for_firm(firm_id).select_related("portfolio", "instrument")
    if portfolio_ids is not None:
        qs = qs.filter(portfolio_id__in=portfolio_ids)
    try:
        found = with_progress(qs).filter(pk=pk).first()
    except (ValueError, TypeError):
        found = None
    except Exception as exc:  # a malformed UUID raises ValidationError from the field
        from django.core.exceptions import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        found = None
    if found is None:
        raise Http404("No such algo order.")
    return found


def algo_children(algo: AlgoOrder) -> QuerySet[Order]:
    """The child orders in slice order: their client_order_ids are '<parent's>:<slice>', so shorter first, then
    by text, is numeric slice order (several slices of one tick share a created_at)."""
    return algo.children.order_by(Length("client_order_id"), "client_order_id")  # bound to the algo's row


@dataclass(frozen=True)
class AlgoProgress:
    qty: Decimal
    sent_qty: Decimal
    filled_qty: Decimal
    slices: int
    slices_sent: int
    slices_refused: int  # children a pre-trade check or the broker refused
    open_children: int
    next_slice_at: datetime | None

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def filled_pct(self) -> Decimal:
        return (self.filled_qty * 100 / self.qty).quantize(Decimal("0.01")) if self.qty else ZERO


def algo_progress(algo: AlgoOrder) -> AlgoProgress:
    """Filled qty of the children vs qty, and slices sent vs slices. Uses ``with_progress``'s annotations
    when the algo came through it, else aggregates its children (one query)."""
    if not hasattr(algo, "children_filled"):
        totals = algo.children.aggregate(
            filled=Coalesce(Sum("filled_qty"), Value(ZERO), output_field=ExactDecimalField()),
            refused=Count("id", filter=Q(status__in=REFUSED)),
            open=Count("id", filter=Q(status__in=[s.value for s in CANCELABLE])))
        filled, refused, open_children = totals["filled"], totals["refused"], totals["open"]
    else:
        filled, refused, open_children = algo.children_filled, algo.children_refused, algo.children_open
    next_at = None
    if algo.status in ("running", "paused") and algo.next_slice < len(algo.schedule):
        next_at = schedule_load([algo.schedule[algo.next_slice]])[0][0]
    return AlgoProgress(qty=algo.qty, sent_qty=algo.sent_qty, filled_qty=filled, slices=algo.slices,
                        slices_sent=algo.next_slice, slices_refused=refused, open_children=open_children,
                        next_slice_at=next_at)


ACTIVE = (AlgoStatus.RUNNING.value, AlgoStatus.PAUSED.value)
PANEL_ACTIVE_ROWS = 50  # a portfolio running more algos than this at once is beyond a panel
PANEL_FINISHED_ROWS = 5


def portfolio_algos(*, portfolio: Portfolio, active_limit: int = PANEL_ACTIVE_ROWS,
                    finished_limit: int = PANEL_FINISHED_ROWS) -> list[AlgoOrder]:
    """The Trade page's Algos panel: the portfolio's running and paused algos (newest first), then its last
    ``finished_limit`` done or canceled ones (latest change first), each with progress. Two queries."""
    qs = with_progress(AlgoOrder.objects.for_firm(portfolio.firm_id).filter(portfolio_id=portfolio.pk))
    active = list(qs.filter(status__in=ACTIVE).order_by("-created_at", "id")[:active_limit])
    finished = list(qs.exclude(status__in=ACTIVE).order_by("-updated_at", "id")[:finished_limit])
    return active + finished
