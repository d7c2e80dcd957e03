"""The demo firm with one user per role and known passwords. Idempotent: a second run changes nothing."""

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Firm, Membership, Role, User
from apps.accounts.services.firms import check_password
from apps.audit.services import Actor, RequestMeta, audit_record

DEMO_SLUG = "demo"
DEMO_NAME = "Octopus Demo Fund"
DEMO_DOMAIN = "demo.octopus.local"


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
        self._print(firm, changes)

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
