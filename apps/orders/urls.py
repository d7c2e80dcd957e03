"""The Trade page, mounted at /trade/ by octopus.urls."""

from apps.orders import views

app_name = "orders"

urlpatterns = views.urls
