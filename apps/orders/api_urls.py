"""Orders API routes, mounted under /api/v1/ by octopus.urls."""

from apps.orders import api_algos
from apps.orders.api import urls

urlpatterns = [*urls, *api_algos.urls]

__all__ = ["urlpatterns"]
