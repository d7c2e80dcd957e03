"""Accounts API routes, mounted under /api/v1/ by octopus.urls."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.accounts import api

router = SimpleRouter(use_regex_path=False)  # <int:pk> converters: typed ids in the schema and the walker
router.register("members", api.MemberViewSet, basename="api-member")
router.register("invitations", api.InvitationViewSet, basename="api-invitation")
router.register("tokens", api.TokenViewSet, basename="api-token")

urlpatterns = [
    path("me/", api.MeView.as_view(), name="api-me"),
    path("firm/", api.FirmView.as_view(), name="api-firm"),
    *router.urls,
]
