from django.urls import path

from apps.core.consumers import EventsConsumer
from apps.marketdata.consumers import MarketConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/market/", MarketConsumer.as_asgi()),
]
