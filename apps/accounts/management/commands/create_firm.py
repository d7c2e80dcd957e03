from django.core.management.base import BaseCommand

from apps.accounts.management.commands._args import domain_to_command_error
from apps.accounts.services import firm_signup
from apps.audit.services import RequestMeta
from apps.core.errors import DomainError


class Command(BaseCommand):
    help = "Create a firm and its owner (the same rules and audit event as the sign-up page)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Firm name")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--password", required=True, help="The owner's password (Django's validators apply)")
        parser.add_argument("--owner-name", default="", help="The owner's full name")

    def handle(self, *args, **opts):
        try:
            membership = firm_signup(firm_name=opts["name"], email=opts["owner_email"], password=opts["password"],
                                     full_name=opts["owner_name"], meta=RequestMeta(user_agent="manage.py create_firm"))
        except DomainError as exc:
            raise domain_to_command_error(exc) from exc
        self.stdout.write(f"Created firm '{membership.firm.name}' (slug {membership.firm.slug}) "
                          f"with owner {membership.user.email}.")
