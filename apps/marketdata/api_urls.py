"""Market data API routes, mounted under /api/v1/ by octopus.urls."""

from django.urls import path

from apps.marketdata import api, api_providers

urlpatterns = [
    path("instruments/", api.InstrumentListApi.as_view(), name="api-instrument-list"),
    path("instruments/<str:symbol>/", api.InstrumentDetailApi.as_view(), name="api-instrument-detail"),
    path("bars/", api.BarListApi.as_view(), name="api-bar-list"),
    path("indicators/", api.IndicatorApi.as_view(), name="api-indicator"),
    path("indicators/catalog/", api.IndicatorCatalogApi.as_view(), name="api-indicator-catalog"),
    path("quotes/", api.QuoteListApi.as_view(), name="api-quote-list"),
    path("data-quality/", api.DataQualityApi.as_view(), name="api-data-quality"),
    path("watchlists/", api.WatchlistListApi.as_view(), name="api-watchlist-list"),
    path("watchlists/<int:pk>/", api.WatchlistDetailApi.as_view(), name="api-watchlist-detail"),
    path("watchlists/<int:pk>/items/", api.WatchlistItemsApi.as_view(), name="api-watchlist-items"),
    # path: crypto pairs are written BTC/USD
    path("watchlists/<int:pk>/items/<path:symbol>/", api.WatchlistItemDetailApi.as_view(),
         name="api-watchlist-item-detail"),
    path("watchlists/<int:pk>/order/", api.WatchlistOrderApi.as_view(), name="api-watchlist-order"),
    path("imports/", api.ImportListApi.as_view(), name="api-import-list"),
    path("imports/<int:pk>/", api.ImportDetailApi.as_view(), name="api-import-detail"),
    path("data-connections/alpaca/", api_providers.AlpacaConnectionApi.as_view(), name="api-alpaca-connection"),
    path("backfills/", api_providers.BackfillViewSet.as_view({"get": "list", "post": "create"}),
         name="api-backfill-list"),
    path("backfills/<int:pk>/", api_providers.BackfillViewSet.as_view({"get": "retrieve"}), name="api-backfill-detail"),
]
