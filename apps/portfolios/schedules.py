"""Beat schedules of portfolios (synced by ``manage.py sync_schedules``; see apps.core.schedules).

Both tasks are idempotent (a snapshot per portfolio and session, an application per action and
portfolio), so running them often only shortens the delay after a session's close."""

from apps.core.schedules import Schedule

SCHEDULES = [
    Schedule(name="portfolios: end-of-day snapshots", task="portfolios.snapshots_close", every_seconds=15 * 60),
    Schedule(name="portfolios: corporate actions due", task="portfolios.corporate_actions_due",
             every_seconds=60 * 60),
]
