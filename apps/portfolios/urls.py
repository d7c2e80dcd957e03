"""Portfolio pages, mounted at /portfolios/ by octopus.urls."""

from apps.portfolios.views import imports, pages

app_name = "portfolios"

urlpatterns = [*pages.urls, *imports.urls]
