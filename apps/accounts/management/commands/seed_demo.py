"""The demo firm with one user per role and known passwords. Idempotent: a second run changes nothing."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Firm, Membership, Role, User
from apps.accounts.services.firms import check_password
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.marketdata.backfill import DEFAULT_HISTORY_DAYS

DEMO_SLUG = "demo"
DEMO_NAME = "Octopus Demo Fund"
DEMO_DOMAIN = "demo.octopus.local"
DEMO_WATCHLIST = ("SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "JPM", "BTC/USD", "ETH/USD")


def demo_logins() -> list[tuple[str, str, str]]:
    """(role, email, password) for every role, in menu order."""
    return [(role, f"{role}@{DEMO_DOMAIN}", f"demo-{role}-pass-2026") for role in Role.values]


class Command(BaseCommand):
    help = "Create (once) the demo firm 'Octopus Demo Fund' with one user per role, and print the logins."

    def handle(self, *args, **opts):
        actor = Actor.system("manage.py seed_demo")
        meta = RequestMeta(user_agent="manage.py seed_demo")
        changes = 0
        with transaction.atomic():
            firm = Firm.objects.select_for_update().filter(slug=DEMO_SLUG).first()
            if firm is None:
                firm = Firm.objects.create(name=DEMO_NAME, slug=DEMO_SLUG)
                audit_record(firm_id=firm.pk, action="firm.signed_up", actor=actor, target_type="firm",
                             target_id=firm.pk, target_label=firm.name,
                             after={"name": firm.name, "slug": firm.slug, "owner": f"owner@{DEMO_DOMAIN}"}, meta=meta)
                changes += 1
            for role, email, password in demo_logins():
                user = User.objects.filter(email=email).first()
                if user is None:
                    check_password(password, user=User(email=email))
                    user = User.objects.create_user(email=email, password=password,
                                                    full_name=f"Demo {role.title()}")
                    changes += 1
                elif not user.check_password(password):
                    user.set_password(password)  # someone changed it; the printed logins must work
                    user.save(update_fields=["password"])
                    changes += 1
                membership = Membership.objects.filter(firm=firm, user=user).first()
                if membership is None:
                    membership = Membership.objects.create(firm=firm, user=user, role=role)
                    audit_record(firm_id=firm.pk, action="member.added", actor=actor, target_type="membership",
                                 target_id=membership.pk, target_label=email, after={"email": email, "role": role},
                                 meta=meta)
                    changes += 1
                elif membership.role != role:
                    audit_record(firm_id=firm.pk, action="member.role_changed", actor=actor,
                                 target_type="membership", target_id=membership.pk, target_label=email,
                                 before={"role": membership.role}, after={"role": role}, meta=meta)
                    membership.role = role
                    membership.save(update_fields=["role"])
                    changes += 1
        # Market data (global) and the demo firm's watchlist; seed_market's progress goes to stderr.
        call_command("seed_market", days=opts.get("market_days", 5), stdout=self.stderr)
        self._market_history(opts.get("history_days", DEFAULT_HISTORY_DAYS))
        changes += self._watchlist(firm, actor, meta)
        changes += self._portfolios(firm, actor)
        changes += self._orders(firm)
        self._print(firm, changes)

    def _market_history(self, days: int) -> None:
        """Bars from the recent window to now (seconds, here), and the long history before it (a Celery task).

        Keeps ``make run`` fast: the Markets page has its recent window at once, the live feed
        continues from the last stored minute, and the worker fills the past in the background.
        """
        from apps.marketdata.backfill import feed_catch_up
        from apps.marketdata.tasks import history_backfill_task

        caught = feed_catch_up()
        self.stderr.write(f"Market data: caught up to now: {caught.skipped or f'{caught.rows} bars'}.")
        if days > 0:
            transaction.on_commit(lambda: history_backfill_task.delay(days=days))
            self.stderr.write(f"Market data: {days} days of history queued for the Celery worker "
                              "(marketdata.history_backfill).")

    def add_arguments(self, parser):
        parser.add_argument("--market-days", type=int, default=5, help="trading days of demo bars (default 5)")
        parser.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS,
                            help=f"days of 1m history the Celery worker backfills before them (default "
                                 f"{DEFAULT_HISTORY_DAYS}; 0: none)")

    def _watchlist(self, firm: Firm, actor, meta) -> int:
        from apps.core.tenancy import firm_scope
        from apps.marketdata.models import Instrument, Watchlist
        from apps.marketdata.services import watchlist_add, watchlist_create

        added = 0
        with firm_scope(firm.pk), transaction.atomic():
            watchlist = Watchlist.objects.filter(name="Demo").first()
            if watchlist is None:
                watchlist = watchlist_create(firm_id=firm.pk, name="Demo", actor=actor, meta=meta)
                added += 1
            listed = set(watchlist.items.values_list("instrument__symbol", flat=True))
            for symbol in DEMO_WATCHLIST:
                if symbol not in listed:
                    instrument = Instrument.objects.get(symbol=symbol)
                    watchlist_add(watchlist=watchlist, instrument=instrument, actor=actor, meta=meta)
                    added += 1
        return added

    def _portfolios(self, firm: Firm, actor) -> int:
        """Demo Growth and Demo Income with imported history (apps.portfolios.demo); once only."""
        from apps.portfolios.demo import demo_portfolios_seed, snapshots_backfill_hint

        made = demo_portfolios_seed(firm_id=firm.pk, actor=actor)
        if made:
            self.stderr.write(f"Portfolios: Demo Growth and Demo Income seeded ({made} rows and actions), "
                              f"snapshots of the last quarter; the whole history: {snapshots_backfill_hint()}")
        return made

    def _orders(self, firm: Firm) -> int:
        """Resting limit buys in Demo Growth (apps.orders.demo), so the blotter has working orders."""
        from apps.orders.demo import demo_orders_seed

        placed = demo_orders_seed(firm_id=firm.pk)
        if placed:
            self.stderr.write(f"Orders: {placed} resting limit buy(s) placed in Demo Growth")
        return placed

    def _print(self, firm: Firm, changes: int) -> None:
        out = self.stdout.write
        out(f"Demo firm: {firm.name} (slug {firm.slug}) — {'created/updated' if changes else 'already up to date'}.")
        out("")
        out(f"{'role':<11} {'email':<30} {'password':<26} 2FA")
        out(f"{'-' * 11} {'-' * 30} {'-' * 26} {'-' * 8}")
        for role, email, password in demo_logins():
            out(f"{role:<11} {email:<30} {password:<26} {'required' if firm.requires_2fa(role) else 'optional'}")
        out("")
        out("Roles marked 'required' are asked to enrol an authenticator app (TOTP) at their first login.")
        out("Log in at http://127.0.0.1:8000/accounts/login/")
