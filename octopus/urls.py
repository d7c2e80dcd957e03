from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from apps.core import views as core_views
from apps.core.api import RedocDocsView, SwaggerDocsView

api_v1 = [
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.audit.api_urls")),
    path("", include("apps.marketdata.api_urls")),
    path("", include("apps.portfolios.api_urls")),
    path("", include("apps.orders.api_urls")),
]

urlpatterns = [
    path("", core_views.dashboard, name="dashboard"),
    path("healthz", core_views.healthz, name="healthz"),
    path("accounts/", include("apps.accounts.urls")),
    path("audit/", include("apps.audit.urls")),
    path("markets/", include("apps.marketdata.urls")),
    path("portfolios/", include("apps.portfolios.urls")),
    path("trade/", include("apps.orders.urls")),
    path("area/<slug:area>/", core_views.area_placeholder, name="area"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", RedocDocsView.as_view(url_name="api-schema"), name="api-redoc"),
]

# JSON in the API's error shape for /api/ paths; the usual HTML pages elsewhere.
handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"
