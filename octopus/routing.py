from django.urls import path

from apps.core.consumers import EventsConsumer
from apps.marketdata.consumers import MarketConsumer
from apps.orders.consumers import OrdersConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/market/", MarketConsumer.as_asgi()),
    path("ws/orders/", OrdersConsumer.as_asgi()),
]
