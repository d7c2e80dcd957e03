from django.core.management.base import BaseCommand, CommandError

from apps.accounts.management.commands._args import domain_to_command_error, firm_by_slug, membership_of
from apps.accounts.models import TokenScope
from apps.accounts.services import token_create
from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError


class Command(BaseCommand):
    help = "Create an API token for a member; prints the token once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--firm", required=True, help="Firm slug")
        parser.add_argument("--email", required=True, help="The member the token acts as")
        parser.add_argument("--scopes", required=True, help=f"Comma-separated: {','.join(TokenScope.values)}")
        parser.add_argument("--expires-days", type=int, default=None)
        parser.add_argument("--name", default="cli")

    def handle(self, *args, **opts):
        firm = firm_by_slug(opts["firm"])
        membership = membership_of(firm, opts["email"])
        scopes = [s.strip() for s in opts["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(TokenScope.values))
        if not scopes or unknown:
            raise CommandError(f"Bad --scopes '{opts['scopes']}': use a comma-separated subset of "
                               f"{','.join(TokenScope.values)}.")
        try:
            created = token_create(membership=membership, name=opts["name"], scopes=scopes,
                                   expires_days=opts["expires_days"],
                                   actor=Actor.system("manage.py create_token"),
                                   meta=RequestMeta(user_agent="manage.py create_token"))
        except DomainError as exc:
            raise domain_to_command_error(exc) from exc
        expiry = created.token.expires_at.isoformat() if created.token.expires_at else "never"
        self.stdout.write(f"Token '{created.token.name}' for {membership.user.email} @ {firm.slug}, "
                          f"scopes {','.join(created.token.scopes)}, expires {expiry}. Shown once:")
        self.stdout.write(created.secret)
