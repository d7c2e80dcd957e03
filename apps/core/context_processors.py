from django.http import HttpRequest


def firm(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    return {
        "firm": getattr(request, "firm", None),
        "membership": membership,
        "role": membership.role if membership else None,
    }
