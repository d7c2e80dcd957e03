"""Orders API routes, mounted under /api/v1/ by octopus.urls."""

from apps.orders.api import urls as urlpatterns

__all__ = ["urlpatterns"]
