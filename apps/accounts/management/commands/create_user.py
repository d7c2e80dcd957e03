import secrets

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.management.commands._args import domain_to_command_error, firm_by_slug
from apps.accounts.models import Membership, Role, User
from apps.accounts.services.firms import check_password, normalize_email
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError


class Command(BaseCommand):
    help = "Add a user to a firm with a role (creates the user if the email is new)."

    def add_arguments(self, parser):
        parser.add_argument("--firm", required=True, help="Firm slug")
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, help=f"One of: {', '.join(Role.values)}")
        parser.add_argument("--password", help="For a new user; a random one is generated and printed if omitted")
        parser.add_argument("--name", default="", help="Full name of a new user")

    def handle(self, *args, **opts):
        firm = firm_by_slug(opts["firm"])
        role = opts["role"]
        if role not in Role.values:
            raise CommandError(f"Unknown role '{role}'. Choose one of: {', '.join(Role.values)}.")
        try:
            email = normalize_email(opts["email"])
        except DomainError as exc:
            raise domain_to_command_error(exc) from exc
        user = User.objects.filter(email__iexact=email).first()
        password = opts["password"]
        generated = False
        if user is None:
            if not password:
                password, generated = secrets.token_urlsafe(18), True
            try:
                check_password(password, user=User(email=email, full_name=opts["name"]))
            except DomainError as exc:
                raise domain_to_command_error(exc) from exc
        elif password:
            raise CommandError(f"{email} already has an account; --password applies to new users only.")
        if user is not None and Membership.objects.filter(firm=firm, user=user).exists():
            raise CommandError(f"{email} is already a member of '{firm.slug}'.")
        with transaction.atomic():
            if user is None:
                user = User.objects.create_user(email=email, password=password, full_name=opts["name"])
            membership = Membership.objects.create(firm=firm, user=user, role=role)
            audit_record(
                firm_id=firm.pk, action="member.added", actor=Actor.system("manage.py create_user"),
                target_type="membership", target_id=membership.pk, target_label=email,
                after={"email": email, "role": role}, meta=RequestMeta(user_agent="manage.py create_user"),
            )
        self.stdout.write(f"Added {email} to '{firm.slug}' as {role}.")
        if generated:
            self.stdout.write(f"Password: {password}")
