"""The single path for live events: every push to open pages goes out through `publish`.

Events are sent only after the surrounding transaction commits, so a page never hears of
a row that a rollback then takes back (Zulip's send_event_on_commit).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def institution_group(institution_id: int) -> str:
    return f"institution.{institution_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a live push is best effort: the row is already committed
        logger.exception("live event to %s could not be sent", group)


def publish(group: str, event: str, payload: dict[str, Any]) -> None:
    """Send `event` with `payload` to every socket in `group`, once the transaction commits."""
    message = {"type": "live.event", "event": event, "payload": payload}
    transaction.on_commit(lambda: _send(group, message))


def pool_group(pool_id: int) -> str:
    """Every reader of a pool: their worklist pages listen here."""
    return f"pool.{pool_id}"
