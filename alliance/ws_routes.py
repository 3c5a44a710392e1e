"""WebSocket routes of the hub."""

from typing import Any

from django.urls import path

from consultations.consumers import RoomConsumer
from referrals.workflow.consumers import ReferralLiveConsumer
from tenants.consumers import NotificationConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/notifications/", NotificationConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/referrals/", ReferralLiveConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/mdt/<int:session_id>/", RoomConsumer.as_asgi()),  # type: ignore[arg-type]
]
