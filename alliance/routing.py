"""WebSocket routes of the hub."""

from typing import Any

from django.urls import path

from tenants.consumers import NotificationConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/notifications/", NotificationConsumer.as_asgi()),  # type: ignore[arg-type]
]
