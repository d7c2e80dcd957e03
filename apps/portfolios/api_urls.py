"""Portfolio API routes, mounted under /api/v1/ by octopus.urls."""

from apps.portfolios.api import corporate, imports, portfolios, valuation

urlpatterns = [*portfolios.urls, *valuation.urls, *corporate.urls, *imports.urls]
