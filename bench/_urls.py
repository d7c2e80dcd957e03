"""One DRF view reading one PostgreSQL row, mounted only in the servers bench/serving.py starts."""

from django.urls import path
from django_celery_beat.models import IntervalSchedule
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class OneRowView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def get(self, request):
        row = IntervalSchedule.objects.order_by("pk").values("id", "every", "period").first()
        return Response(row)


urlpatterns = [path("bench/one-row/", OneRowView.as_view())]
