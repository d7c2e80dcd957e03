"""The site's URLs plus two bench-only views for bench/orders.py: serving.py's one-row GET (readiness)
and the floor of a write, a bare DRF POST inserting one row (no authentication, no throttle)."""

from django.urls import path
from django_celery_beat.models import IntervalSchedule
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from bench._urls import OneRowView
from octopus.urls import urlpatterns as site

PEER_PERIOD = IntervalSchedule.MICROSECONDS  # the peer's rows, deleted by the bench afterwards


class OneRowInput(serializers.ModelSerializer):
    class Meta:
        model = IntervalSchedule
        fields = ["every"]


class InsertOneView(APIView):
    """POST {"every": n} -> 201 with the row: parse, validate, INSERT (autocommit), render."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request):
        data = OneRowInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = data.save(period=PEER_PERIOD)
        return Response({"id": row.pk, "every": row.every}, status=201)


urlpatterns = [
    path("bench/one-row/", OneRowView.as_view()),
    path("bench/insert-one/", InsertOneView.as_view()),
    *site,
]
