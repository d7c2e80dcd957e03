"""Template helpers for the top bar."""

from django import template

from apps.accounts.selectors import membership_list_for_user

register = template.Library()


@register.simple_tag(takes_context=True)
def user_memberships(context) -> list:
    """The signed-in user's memberships, for the firm switcher."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return list(membership_list_for_user(user=user))
