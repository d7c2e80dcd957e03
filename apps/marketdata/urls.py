"""Market data pages, mounted under /markets/ by octopus.urls."""

from django.urls import path  # noqa: F401 - routes are added by the page modules

from apps.marketdata.views import imports, markets, quality

app_name = "marketdata"

urlpatterns: list = [
    path("", markets.markets, name="markets"),
    path("watchlist/add/", markets.watchlist_item_add, name="watchlist_add"),
    path("watchlist/remove/", markets.watchlist_item_remove, name="watchlist_remove"),
    path("imports/", imports.imports, name="imports"),
    path("imports/<int:pk>/", imports.import_detail, name="import_detail"),
    path("quality/", quality.quality, name="quality"),
]
