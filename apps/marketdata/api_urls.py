"""Market data API routes, mounted under /api/v1/ by octopus.urls."""

from django.urls import path

from apps.marketdata import api

urlpatterns = [
    path("instruments/", api.InstrumentListApi.as_view(), name="api-instrument-list"),
    path("instruments/<str:symbol>/", api.InstrumentDetailApi.as_view(), name="api-instrument-detail"),
    path("bars/", api.BarListApi.as_view(), name="api-bar-list"),
    path("indicators/", api.IndicatorApi.as_view(), name="api-indicator"),
    path("indicators/catalog/", api.IndicatorCatalogApi.as_view(), name="api-indicator-catalog"),
]
