"""Firm event stream at /ws/events/ (placeholder; see apps.core.events)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close(code=4401)
