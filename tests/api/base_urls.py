"""A tiny URLconf exercising apps.core.api's base classes the way a later app would use them."""

from django.urls import include, path
from rest_framework import mixins, serializers
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from apps.accounts.models import AUDIT_ROLES
from apps.accounts.selectors import member_get
from apps.audit.models import AuditEvent
from apps.core.api import FirmScopedAPIView, FirmScopedViewSet


class EventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField()


class EventViewSet(FirmScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    """model= on a FirmOwnedModel: the default queryset_for filters by the request's firm."""

    model = AuditEvent
    serializer_class = EventOutput
    required_roles = AUDIT_ROLES

    def perform_destroy(self, instance):  # never reached for another firm's id; proves the ordering
        raise AssertionError("destroy must not run")


class MemberNoteView(FirmScopedAPIView):
    """A non-CRUD view with an object in its URL: object_for() runs before role and scope checks."""

    write_roles = frozenset({"owner"})

    def object_for(self, firm, pk):
        return member_get(firm=firm, pk=pk)

    def get(self, request, pk):
        return Response({"email": self.get_firm_object().user.email})

    def post(self, request, pk):
        return Response({"noted": self.get_firm_object().pk})


class UnscopedMemberView(FirmScopedAPIView):
    """No model and no queryset_for: must refuse to guess."""

    def get(self, request):
        return Response({"count": self.get_queryset().count()})


router = SimpleRouter(use_regex_path=False)
router.register("events", EventViewSet, basename="test-event")

urlpatterns = [
    path("api/test/members/<int:pk>/note/", MemberNoteView.as_view()),
    path("api/test/unscoped/", UnscopedMemberView.as_view()),
    path("api/test/", include(router.urls)),
]
