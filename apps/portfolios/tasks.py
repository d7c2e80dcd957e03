"""Portfolio tasks (thin: load, call a service). Each area's task body lives with its service."""

from __future__ import annotations

from celery import shared_task

from apps.core.tasks import firm_task


@firm_task(name="portfolios.trade_import_run", soft_time_limit=1800, time_limit=1860)
def trade_import_run(firm_id: int, import_id: int) -> dict:
    from apps.portfolios.trade_import import run_import

    return run_import(firm_id=firm_id, import_id=import_id)


@shared_task(name="portfolios.snapshots_close", acks_late=True, ignore_result=True)
def snapshots_close() -> dict:
    """Beat: after each session's close, snapshot every portfolio whose snapshot for it is missing."""
    from apps.portfolios.valuation import snapshots_at_close

    return snapshots_at_close()


@shared_task(name="portfolios.corporate_actions_due", acks_late=True, ignore_result=True)
def corporate_actions_due() -> dict:
    """Beat: apply every firm's corporate actions that have become effective or payable."""
    from apps.portfolios.corporate import apply_due

    return apply_due()
